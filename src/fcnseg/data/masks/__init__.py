"""How a mask file becomes training labels, in reading order.

encodings.py   the stored values: class indices, 0/255 binary, palette PNG or RGB colours
classes.py     class tables (classes.txt, YAML, class_dict.csv): names, colours, void rows
labels.py      stored values -> labels 0..K-1 and the ignore label; the dataset's palette
"""
