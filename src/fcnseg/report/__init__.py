"""What people read after a run or an evaluation.

evaluation.py            every score of a predictor over a split, the best and worst images
run_report.py            metrics.json, report.md, curves.png, samples.png
html.py                  the self-contained report.html
figures.py               the charts (matplotlib, without pyplot or a global backend)
instance_evaluation.py   an instance model over a split: mask AP, DSB, the judged gallery
instance_report.py       the instance task's metrics.json, report.md and report.html
figures_instances.py     its pictures: judged instances, precision-recall, curves
"""
