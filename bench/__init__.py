"""Benchmark every registered model: parameters, GFLOPs, images/s, peak memory and MFU, fp32 eager vs fast path.

``python -m bench`` builds each model at the paper's sizes (HR 256, x8 and x16) on the GPU, or at a small
size on the CPU when there is none, and measures one train step (forward, the train loop's pixel loss plus the
model's auxiliary loss, backward, Adam step) and one inference forward on random inputs resident on the device.
Both paths run in the same process, side by side:

- ``fp32``: plain fp32 eager, NCHW, foreach Adam;
- ``fast``: the train loop's switches (`TrainConfig.bf16`, `channels_last`, `compile`, `fused_adam`): bf16 autocast
  and channels-last everywhere, `torch.compile` and the fused Adam kernel on CUDA only (on the CPU compiling each
  model takes minutes and fused Adam is a CUDA kernel).

GFLOPs are counted with `torch.utils.flop_counter.FlopCounterMode` on the first fp32 warm-up step (matmuls,
convolutions and attention; element-wise work and the optimiser are not counted) and reported per image; its
convolution-backward formula is replaced (see `llvfsr.measure.flop_counter`).
`python -m bench --project table1,ablation` turns the images/s into the device-hours of each sweep grid with the
projection that the sweeps hand it (`sweeps.resources`, which also packs several trials per GPU from the GPU table).
"""
