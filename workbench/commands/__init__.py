"""Sub-commands of ``workbench`` that sit beside the library parts they drive (data, models, teachers)."""
