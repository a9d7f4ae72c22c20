"""The portable generator of src/rng.rs (SplitMix64-seeded xoshiro256**,
Lemire's bounded integers), reimplemented for the augmentation draws."""

M64 = (1 << 64) - 1
AUGMENT_STREAM = 9


def _splitmix(state):
    state = (state + 0x9E3779B97F4A7C15) & M64
    z = state
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return state, z ^ (z >> 31)


def derive(seed, tags):
    _, out = _splitmix(seed)
    for t in tags:
        _, out = _splitmix(out ^ ((t * 0xD6E8FEB86659FD93) & M64))
    return out


def _rotl(x, k):
    return ((x << k) | (x >> (64 - k))) & M64


class Xoshiro:
    def __init__(self, seed):
        st, self.s = seed, []
        for _ in range(4):
            st, v = _splitmix(st)
            self.s.append(v)

    def next(self):
        s = self.s
        result = (_rotl((s[1] * 5) & M64, 7) * 9) & M64
        t = (s[1] << 17) & M64
        s[2] ^= s[0]
        s[3] ^= s[1]
        s[1] ^= s[2]
        s[0] ^= s[3]
        s[2] ^= t
        s[3] = _rotl(s[3], 45)
        return result

    def below(self, n):
        while True:
            m = self.next() * n
            if (m & M64) >= ((1 << 64) - n) % n:
                return m >> 64
