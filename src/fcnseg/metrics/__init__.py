"""Scores from a confusion matrix (IoU, Dice, accuracies, bootstrap interval) and boundary F1.

confusion.py   ConfusionMatrix -> Scores
boundary.py    boundary precision / recall / F1 within a pixel tolerance
instances.py   InstanceEvaluator -> InstanceScores: COCO mask AP / AR and the DSB 2018 score
matching.py    mask overlaps, COCO's greedy match and DSB's one-to-one match
"""

from fcnseg.metrics.confusion import ConfusionMatrix, Scores
from fcnseg.metrics.instances import InstanceEvaluator, InstanceScores

__all__ = ["ConfusionMatrix", "InstanceEvaluator", "InstanceScores", "Scores"]
