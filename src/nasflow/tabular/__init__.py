"""Tabular benchmarks shipped with nasflow: published results for every architecture of a space.

A tabular benchmark turns "train this candidate" into a table lookup, so search strategies
can be compared over thousands of runs in seconds, and a space's networks can be checked
against the published ones (parameter counts). Each table lives gzipped under ``data/``
with a ``SOURCE.md`` that records where it comes from and its checksums.
"""
