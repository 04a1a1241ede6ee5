"""Images on disk to a checked dataset, read once: `layouts` (which files, which labels),
`scan` (each file read and decoded once, problems collected), `image_store` (the decoded
images, memory-mapped), `problems` (what a scan or layout found, as kinds), `dataset`
(`FaceData`, the split, `load_dataset`) and `options` (the data options every CLI shares)."""
