"""Single-shot autofocus models: preprocessing, metrics, model cards and the TFLite runtime.

Only ``deepaf_host.model.train`` imports TensorFlow (the optional ``train`` extra).
"""
