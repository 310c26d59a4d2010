"""The paper's two networks: the stage-1 motion Transformer and the stage-2 U-Net."""
