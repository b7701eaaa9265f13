"""What a finished (or running) G-BAIR workdir says: tables, recovered fractions and plots, read from
WORKDIR/results.csv (`paper.write_report`; CLIs: `python -m gbair.reports.tables|plots WORKDIR`), and
the paired analysis of a pre-registered study (`python -m gbair.reports.findings DIR`)."""
