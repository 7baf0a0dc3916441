"""The Streamlit app of the workbench: ``app/main.py`` (entry), ``app/lib/`` (what the pages share),
and one short script per page under ``app/views/``."""
