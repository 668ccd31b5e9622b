"""Training, export and evaluation of the autofocus models (needs the ``train`` extra:
``pip install 'deepaf-host[train]'``)."""
