"""Testing the paper's claims: `ablate.py` trains the variants a claim compares (sections
3.1-3.4, 4.1-4.2, 6) and tabulates them; `report.py` writes one HTML page for a run;
`transfer.py` runs the transfer study's cells and `transfer_table.py` tabulates and compares
their records.
"""
