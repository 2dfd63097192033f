"""Strided views of a 4-D (N, C, H, W) tensor that the op tests feed to every kernel: a
transposed image, a strided crop, a permuted batch and channel, and a broadcast batch."""

NON_CONTIGUOUS_4D = [
    lambda x: x.transpose(-1, -2),
    lambda x: x[..., ::2, 1::3],
    lambda x: x.permute(1, 0, 2, 3),
    lambda x: x[:1].expand(3, -1, -1, -1),
]
