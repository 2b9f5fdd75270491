"""Reproduction suite for Dynamic DropConnect: datasets, models, training and reports."""
