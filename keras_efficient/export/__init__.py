"""Export: TFLite conversion, the LiteRT runtime, verification against Keras, manifests."""
