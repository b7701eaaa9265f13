"""What a finished (or running) G-BAIR workdir says: tables, recovered fractions and plots, read from
WORKDIR/results.csv (`paper.write_report`; CLIs: `python -m gbair.reports.paper|tables|plots --workdir=WORKDIR`),
and the paired analysis of a pre-registered study (`python -m gbair.reports.findings --workdir=DIR`)."""
