"""Detection pieces: anchors, box coding, matching, BiFPN, heads and post-processing."""
