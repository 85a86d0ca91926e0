"""Serving the network over HTTP: `alexnet serve`, and its load test.

engine.py   the network behind the server (checkpoint, safetensors or ONNX), photos to views,
            Grad-CAM and fc7 neighbors for one photo
batcher.py  the micro-batcher: concurrent requests' views through the network together
pictures.py the overlay, thumbnails and PNG data URIs the page shows
app.py      the FastAPI application: the API, its limits, the page
page.html   the page at / (self-contained: nothing fetched from elsewhere)
load.py     `alexnet bench serve`: a bounded load test on the loopback address
"""
