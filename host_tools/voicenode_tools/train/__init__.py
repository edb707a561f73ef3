"""Wake-word training from text: synthesis, augmentation, training and export."""
