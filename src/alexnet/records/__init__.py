"""The docs' tables and figures, drawn from the committed records (docs/runs, docs/bench).

`alexnet report-docs` rewrites every generated table in the pages listed in
`alexnet.records.pages.PAGES` from its record, and with `--figures` redraws the figures;
`--check` fails when a committed page differs from what its records give, so that a page
cannot drift from them.
"""
