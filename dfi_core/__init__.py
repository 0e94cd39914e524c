"""Small core shared by `training` and `service` (it imports neither): the bundle format and what both sides compute.

    bundle        the model bundle: manifest schema, `load_bundle` (checks), `write_manifest`, `edit_bundle`
    datasets      the served data sets' images, labels and class names read from disk, without torch
    generator     the generator architecture G: z [N, z_dim] N(0, I) → image [N, C, H, W] [-1, +1] (torch)
    metrics       reconstruction metrics on [-1, +1] images (PSNR numpy; SSIM torchmetrics, lazily)
    onnx_graph    the ONNX Runtime wrapper that checks a graph's input at the boundary
    preprocessing image loading and conversion to the model range, the same for training data and uploads
    refinement    latent refinement (IJCV eq. 2) and rebuilding a bundle's G from generator.safetensors (torch)

Importing the package imports none of them. `generator` and `refinement` need torch; the others need numpy,
Pillow and pydantic (onnxruntime lazily), so the ONNX-only service image imports them without torch.
"""
