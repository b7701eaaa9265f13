"""gbair: G-BAIR (gradient-based automated iterative recovery) for prompt tuning, in JAX/Flax."""

import setuptools

setuptools.setup(
    name="gbair",
    version="0.1.0",
    description="TracIn-based label-noise recovery for prompt-tuned models (G-BAIR) in JAX/Flax",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=setuptools.find_packages(include=["gbair", "gbair.*"]),
    package_data={"gbair.data": ["spam_assassin_ids.txt"]},  # the pinned ids the embedded splits use
    python_requires=">=3.10",
    install_requires=[
        "absl-py>=2.1",
        "cleanlab>=2.6",  # the cleanlab baseline
        "clu>=0.0.12",  # TensorBoard scalars through clu's metric writers (as T5X writes them)
        "flax>=0.10",
        "gin-config>=0.5",
        "jax>=0.4.35",
        "matplotlib>=3.8",
        "msgpack>=1.0",  # legacy T5X checkpoints
        "numpy>=1.26",
        "optax>=0.2.4",
        "orbax-checkpoint>=0.11",
        "safetensors>=0.4",
        "sentencepiece>=0.2",  # T5's vocabulary
        "seqio>=0.0.19",  # the safety datasets as seqio tasks (pulls in TensorFlow, CPU build)
        "tensorboard>=2.16",  # clu's summary writer needs it; the tests read the event files back
        "tensorflow-datasets>=4.9",  # civil_comments, wikipedia_toxicity_subtypes
        "tensorstore>=0.1.60",  # zarr arrays of legacy T5X checkpoints
        "tokenizers>=0.20",
    ],
    extras_require={
        # scikit-learn is an independent oracle for gbair's metrics in the tests;
        # selenium drives Debian's chromium in tests/test_report_browser.py.
        "test": ["pytest>=8", "scikit-learn>=1.4", "selenium>=4.20"],
        # PyTorch peers for benchmarks and the golden-file generators (CPU wheel 2.13.0).
        "bench": ["torch==2.13.0", "transformers>=4.40", "captum>=0.9"],
    },
)
