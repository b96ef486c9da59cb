"""The Kafka service around the segmentation core."""
