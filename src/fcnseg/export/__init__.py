"""Deployment files: a checkpoint -> a checked ONNX model -> optionally an int8 model, judged.

pipeline.py   `fcnseg export`: the steps below, with their checks and messages
onnx.py       export_onnx with metadata, check_parity against PyTorch
int8.py       static int8 quantization, judged by its mIoU change on validation data
fcis_numpy.py FCIS's post-processing in numpy alone, for a service without torch
"""
