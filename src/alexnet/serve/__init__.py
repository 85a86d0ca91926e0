"""Serving the network over HTTP: `alexnet serve`, and its load test.

engine.py  the network behind the server (checkpoint, safetensors or ONNX), photos to views,
           Grad-CAM and fc7 neighbors for one photo, and the micro-batcher
app.py     the FastAPI application: the API, its limits, the page
page.html  the page at / (self-contained: nothing fetched from elsewhere)
load.py    `alexnet bench serve`: a bounded load test on the loopback address
"""
