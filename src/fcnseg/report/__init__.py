"""What people read after a run or an evaluation.

evaluation.py   every score of a predictor over a split, the best and worst images
run_report.py   metrics.json, report.md, curves.png, samples.png
html.py         the self-contained report.html
figures.py      the charts (matplotlib, without pyplot or a global backend)
"""
