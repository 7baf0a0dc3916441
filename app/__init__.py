"""The Streamlit app of the workbench: ``app/main.py`` (entry), ``app/shared.py`` (what every page
uses), and one short script per page under ``app/views/``."""
