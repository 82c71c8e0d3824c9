"""The published numbers of LLV-FSR (Wang et al.), Tables 1 and 2, MM-CelebA-HQ test set (6,000 faces)."""

METRICS = ("psnr", "ssim", "niqe", "lpips")

# Table 1: method -> scale -> (PSNR, SSIM, NIQE, LPIPS)
TABLE1 = {
    "bicubic": {8: (26.07, 0.7156, 12.335, 0.2134), 16: (22.88, 0.6100, 15.700, 0.2501)},
    "srcnn": {8: (26.42, 0.7240, 12.016, 0.2030), 16: (23.11, 0.6079, 12.994, 0.2402)},
    "fsrnet": {8: (28.41, 0.7874, 9.741, 0.1317), 16: (24.85, 0.6808, 10.872, 0.1817)},
    "dic": {8: (28.80, 0.7982, 9.692, 0.1251), 16: (25.22, 0.6930, 9.948, 0.1628)},
    "sisn": {8: (28.73, 0.7959, 9.460, 0.1336), 16: (25.09, 0.6878, 10.332, 0.1901)},
    "faceformer": {8: (28.88, 0.8008, 9.513, 0.1269), 16: (25.47, 0.7021, 10.510, 0.1770)},
    "sfmnet": {8: (29.12, 0.8104, 9.639, 0.1140), 16: (25.36, 0.6999, 10.417, 0.1743)},
    "wfen": {8: (29.10, 0.8089, 9.450, 0.1182), 16: (25.52, 0.7107, 10.406, 0.1610)},
    "llvfsr": {8: (29.35, 0.8140, 9.419, 0.1122), 16: (25.95, 0.7228, 10.199, 0.1501)},
}

# Table 2 (x8): the LVPFB ablation.
TABLE2 = {
    "llvfsr-model1": (29.17, 0.8100, 9.522, 0.1143),
    "llvfsr-model2": (29.24, 0.8128, 9.531, 0.1129),
    "llvfsr": (29.35, 0.8140, 9.419, 0.1122),
}

TABLE1_ORDER = ("bicubic", "srcnn", "fsrnet", "dic", "sisn", "faceformer", "sfmnet", "wfen", "llvfsr")
TABLE2_ORDER = ("llvfsr-model1", "llvfsr-model2", "llvfsr")
PRIOR_ORDER = (
    "llvfsr-model1",
    "llvfsr-wo-mask",
    "llvfsr-wo-depth",
    "llvfsr-wo-caption",
    "llvfsr-wo-description",
    "llvfsr",
)
