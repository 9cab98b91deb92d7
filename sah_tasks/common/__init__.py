"""Helpers shared by the task folders: data loading and answer normalisation."""
