import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

# The suite runs on a 2-core CPU in fp32; keep thread counts small and deterministic.
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
