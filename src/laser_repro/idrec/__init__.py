"""ID-based sequential recommenders (SASRec, BERT4Rec, GRU4Rec, FDSA), their trainer and the
frozen collaborative encoder that feeds Laser's M-Former (paper §4.2)."""
