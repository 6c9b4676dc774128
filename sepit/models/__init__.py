"""The SEPIT network: the structure-aware ESM-2 encoder, the projector (or Q-Former), the spliced language model,
its mixture of experts and LoRA, the stage-0 warm-up objectives and greedy decoding. Checkpoints live in
`sepit.checkpoints`, the interface every model implements in `sepit.interface`."""
