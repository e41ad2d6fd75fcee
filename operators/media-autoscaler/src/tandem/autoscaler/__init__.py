"""The media-autoscaler operator: MediaWorkerPool per regional cluster."""
