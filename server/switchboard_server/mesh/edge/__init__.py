"""The edge's front doors: health and reflection, REST/JSON, gRPC-Web and the web page, OpenAPI."""
