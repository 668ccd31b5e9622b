"""Virtual refocusing (seed 002, Deep-R): one defocused frame -> its in-focus image.

- ``pairs``: training and test pairs from the virtual microscope (a defocused, noisy
  frame and the noise-free render of the same field at dz = 0).
- ``metrics``: SSIM and PSNR against the true in-focus render.
- ``card``: the refocus model card (a small JSON beside the ``.tflite``).
- ``runtime``: the network run by ai-edge-litert (no TensorFlow), tiled over a full
  frame with overlap, and the pass-through guard for frames already in focus.
- ``repair``: ``deepaf-host refocus DIR``, repairing a finished scan's suspect tiles.
- ``train`` (needs the ``train`` extra): the residual U-Net, its training and export.
- ``bench``: the figures (``python -m deepaf_host.refocus.bench``).
"""
