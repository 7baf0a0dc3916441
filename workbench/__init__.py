"""Distillation Workbench: train a student from a teacher in seconds, then see what it learned."""

__version__ = "0.1.0"
