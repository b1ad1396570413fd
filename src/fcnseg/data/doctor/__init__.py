"""The label doctor (`fcnseg inspect`, and the checks `fcnseg train` runs before its first step).

scan.py       every mask read once, one bincount each; image headers only
findings.py   the rules: what would make training fail, learn nothing, or mislead
inspect.py    scan + rules -> Inspection; check_before_training
advice.py     the loss and class weights to start from, by a rule on the class balance
report.py     the account as text and as plain data (inspect.json)
"""
