"""DFI over the Open Inference Protocol (KServe V2) with NVIDIA's Triton client: `pip install "tritonclient[http]"`,
start the service (`bash scripts/run.sh`), then `python scripts/examples/triton_client.py [HOST:PORT]`."""

import sys

import numpy as np
import tritonclient.http as httpclient

from dfi_core.preprocessing import load_image, to_model_range

url = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:8000"
client = httpclient.InferenceServerClient(url)  # headers={"X-API-Key": ...} when DFI_API_KEYS is set
assert client.is_server_live() and client.is_model_ready("fashion-mnist.invert")
metadata = client.get_model_metadata("fashion-mnist.invert")
print(metadata["inputs"], metadata["outputs"])  # image [-1, 1, 28, 28] FP32 → z [-1, 64] FP32

# Images → latents: the model-range tensor [N, C, H, W] float32 in [-1, 1], sent as binary (the client's default).
names = ("fashion-mnist-00000.png", "fashion-mnist-00001.png")
x = to_model_range(np.stack([load_image(f"service/static/samples/{name}", 28, 1) for name in names]))
image = httpclient.InferInput("image", list(x.shape), "FP32")
image.set_data_from_numpy(x)
z = client.infer("fashion-mnist.invert", [image]).as_numpy("z")

# Latents → images, JSON both ways this time.
latent = httpclient.InferInput("z", list(z.shape), "FP32")
latent.set_data_from_numpy(z, binary_data=False)
wanted = httpclient.InferRequestedOutput("image", binary_data=False)
images = client.infer("fashion-mnist.generator", [latent], outputs=[wanted]).as_numpy("image")
mse = float(((images - x) ** 2).mean() / 4)  # in [0, 1] units: the range [-1, 1] is 2 wide
print(f"z {z.shape}, reconstructions {images.shape}, PSNR {10 * np.log10(1 / mse):.2f} dB")
