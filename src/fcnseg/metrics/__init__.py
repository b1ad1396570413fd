"""Scores from a confusion matrix (IoU, Dice, accuracies, bootstrap interval) and boundary F1.

confusion.py   ConfusionMatrix -> Scores
boundary.py    boundary precision / recall / F1 within a pixel tolerance
"""

from fcnseg.metrics.confusion import ConfusionMatrix, Scores

__all__ = ["ConfusionMatrix", "Scores"]
