"""Bad-input fuzzer of torch_qdev's public ops, layers and quantize_ configs.

``cases.make_case(seed)`` builds one deterministic case (a valid call with one argument
mutated); ``runner`` runs cases in child processes in batches and pins a crash or a hang
to its case by re-running the batch case by case. Every case must end in a clean Python
exception or in a result equal to the plain-PyTorch reference computed on the same
(mutated) arguments; a reference that refuses the arguments means the op should have
refused them too.
"""
