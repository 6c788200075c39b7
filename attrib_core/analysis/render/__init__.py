"""Rendering results for people: figures, HTML pages, markdown tables (report, compare, history, tune).

It reads the tidy tables and verdicts of `attrib_core.analysis` and computes no statistic of its own.
"""
