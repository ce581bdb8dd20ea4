"""Laser (paper §4): Bi-Tuning with an M-Former prefix around a frozen LLM, two-phase training.

One idea per module:

* ``config``    LaserRunConfig: every switch of Tables 2-5 and Figures 3-5, defaults written once
* ``template``  the text template and its Table 5 variants
* ``inputs``    item-index histories -> cached, budgeted token ids
* ``backbones`` the frozen LLM registry and adapters (gpt2-large, chatglm2-6b, llama2-7b, local:PATH,
                tiny-gpt2, tiny-llama, minilm)
* ``mformer``   the M-Former (Eqs. 4-5)
* ``losses``    L_IIC, L_LB, L (Eqs. 6-10)
* ``model``     Bi-Tuning: [prefix][instruction][suffix] -> embedding (Eqs. 1-3)
* ``trainer``   two-phase training, checkpoints, metrics.json / ranks.npz
* ``cli``       ``laser-repro train-laser --config RUN.yaml --out DIR``
* ``tiny``      tiny data sets and configs for tests and benchmarks
"""
