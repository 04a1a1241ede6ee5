"""A trained model used on its own: `inference` (a results folder's model.pt, scored on
images), `faces` (a photo framed like the training crops, with MTCNN) and `export`
(TorchScript and ONNX). `python -m study.predict` is its command line."""
