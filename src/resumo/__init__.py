"""resumo: fine-tune a small language model to summarise Portuguese, as Kubeflow Pipelines."""

__version__ = "0.1.0"
