/* Unit tests for src/hash.c: SipHash-2-4 and key generation.
 *
 * Expected values are the published 64-bit test vectors of the SipHash
 * reference implementation (vectors_sip64: key 00 01 .. 0f, message of
 * length n with bytes 00 01 .. n-1), written here as little-endian 64-bit
 * numbers. Every length the table covers is also checked against a second
 * implementation written in this file from the paper's description. */
#include "unit_support.h"

#include "hash.h"

/* The reference key 00 01 02 .. 0f, read as two little-endian words. */
static const uint64_t ref_key[2] = {0x0706050403020100ULL, 0x0f0e0d0c0b0a0908ULL};

static void ref_message(uint8_t *m, size_t n)
{
    for (size_t i = 0; i < n; i++)
        m[i] = (uint8_t)i;
}

/* ---------------------------------------------------------------------------
 * An independent SipHash-2-4, byte-oriented (no memcpy loads, so it does not
 * depend on the host byte order), for cross-checks. */

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND(v0, v1, v2, v3)                                                                   \
    do {                                                                                           \
        v0 += v1;                                                                                  \
        v1 = ROTL(v1, 13);                                                                         \
        v1 ^= v0;                                                                                  \
        v0 = ROTL(v0, 32);                                                                         \
        v2 += v3;                                                                                  \
        v3 = ROTL(v3, 16);                                                                         \
        v3 ^= v2;                                                                                  \
        v0 += v3;                                                                                  \
        v3 = ROTL(v3, 21);                                                                         \
        v3 ^= v0;                                                                                  \
        v2 += v1;                                                                                  \
        v1 = ROTL(v1, 17);                                                                         \
        v1 ^= v2;                                                                                  \
        v2 = ROTL(v2, 32);                                                                         \
    } while (0)

static uint64_t le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static uint64_t model_siphash24(const uint8_t key[16], const uint8_t *in, size_t len)
{
    uint64_t k0 = le64(key), k1 = le64(key + 8);
    uint64_t v0 = 0x736f6d6570736575ULL ^ k0;
    uint64_t v1 = 0x646f72616e646f6dULL ^ k1;
    uint64_t v2 = 0x6c7967656e657261ULL ^ k0;
    uint64_t v3 = 0x7465646279746573ULL ^ k1;
    size_t full = len - len % 8;
    for (size_t off = 0; off < full; off += 8) {
        uint64_t m = le64(in + off);
        v3 ^= m;
        SIPROUND(v0, v1, v2, v3);
        SIPROUND(v0, v1, v2, v3);
        v0 ^= m;
    }
    uint8_t last[8] = {0};
    for (size_t i = 0; i < len % 8; i++)
        last[i] = in[full + i];
    last[7] = (uint8_t)len;
    uint64_t b = le64(last);
    v3 ^= b;
    SIPROUND(v0, v1, v2, v3);
    SIPROUND(v0, v1, v2, v3);
    v0 ^= b;
    v2 ^= 0xff;
    for (int i = 0; i < 4; i++)
        SIPROUND(v0, v1, v2, v3);
    return v0 ^ v1 ^ v2 ^ v3;
}

/* ---------------------------------------------------------------------------
 * Reference vectors */

static const struct {
    size_t len;
    uint64_t want;
} vectors[] = {
    {0, 0x726fdb47dd0e0e31ULL},  {1, 0x74f839c593dc67fdULL},  {2, 0x0d6c8009d9a94f5aULL},
    {3, 0x85676696d7fb7e2dULL},  {4, 0xcf2794e0277187b7ULL},  {7, 0xab0200f58b01d137ULL},
    {8, 0x93f5f5799a932462ULL},  {9, 0x9e0082df0ba9e4b0ULL},  {15, 0xa129ca6149be45e5ULL},
    {16, 0x3f2acc7f57c29bdbULL}, {30, 0xad87a3535c49ef28ULL}, {31, 0x32d892fad841c342ULL},
    {32, 0x7127512f72f27cceULL}, {62, 0xe51b38608ef25f57ULL}, {63, 0x958a324ceb064572ULL},
};

TEST(siphash24_matches_published_reference_vectors)
{
    uint8_t msg[64];
    ref_message(msg, sizeof msg);
    for (size_t i = 0; i < sizeof vectors / sizeof vectors[0]; i++) {
        uint64_t got = hash_sip(ref_key, msg, vectors[i].len);
        if (got != vectors[i].want)
            fail_msg("length %zu: got %016llx, want %016llx", vectors[i].len,
                     (unsigned long long)got, (unsigned long long)vectors[i].want);
    }
}

TEST(independent_model_agrees_with_published_vectors)
{
    /* Guards the cross-check below: the model itself is right. */
    uint8_t key[16], msg[64];
    ref_message(key, sizeof key);
    ref_message(msg, sizeof msg);
    for (size_t i = 0; i < sizeof vectors / sizeof vectors[0]; i++)
        assert_true(model_siphash24(key, msg, vectors[i].len) == vectors[i].want);
}

TEST(siphash24_matches_independent_model_for_every_length_up_to_200)
{
    uint8_t key[16], msg[200];
    ref_message(key, sizeof key);
    ref_message(msg, sizeof msg);
    for (size_t len = 0; len <= sizeof msg; len++) {
        uint64_t got = hash_sip(ref_key, msg, len), want = model_siphash24(key, msg, len);
        if (got != want)
            fail_msg("length %zu: got %016llx, model %016llx", len, (unsigned long long)got,
                     (unsigned long long)want);
    }
}

TEST(siphash24_matches_model_with_other_keys_and_unaligned_data)
{
    /* Random keys and messages, read from odd offsets: the word loads must
     * not assume alignment and the key words must be used as given. */
    uint8_t buf[128 + 8];
    for (int round = 0; round < 64; round++) {
        uint64_t k[2];
        uint8_t kb[16];
        assert_int_equal(hash_random_key(k), 0);
        for (int i = 0; i < 8; i++) {
            kb[i] = (uint8_t)(k[0] >> (8 * i));
            kb[8 + i] = (uint8_t)(k[1] >> (8 * i));
        }
        for (size_t i = 0; i < sizeof buf; i++)
            buf[i] = (uint8_t)(rand() & 0xff);
        size_t off = (size_t)round % 8, len = (size_t)(round * 37) % 128;
        assert_true(hash_sip(k, buf + off, len) == model_siphash24(kb, buf + off, len));
    }
}

TEST(siphash24_depends_on_key_and_on_every_message_byte)
{
    uint8_t msg[16];
    ref_message(msg, sizeof msg);
    uint64_t other_key[2] = {ref_key[0] ^ 1, ref_key[1]};
    uint64_t base = hash_sip(ref_key, msg, sizeof msg);
    assert_true(hash_sip(other_key, msg, sizeof msg) != base);
    for (size_t i = 0; i < sizeof msg; i++) {
        msg[i] ^= 0x80;
        assert_true(hash_sip(ref_key, msg, sizeof msg) != base);
        msg[i] ^= 0x80;
    }
    /* A trailing zero byte changes the length, hence the hash. */
    uint8_t z[2] = {0, 0};
    assert_true(hash_sip(ref_key, z, 1) != hash_sip(ref_key, z, 2));
}

TEST(random_key_differs_between_calls)
{
    uint64_t a[2], b[2];
    assert_int_equal(hash_random_key(a), 0);
    assert_int_equal(hash_random_key(b), 0);
    assert_true(a[0] != b[0] || a[1] != b[1]);
    /* Both words are filled (a word left at zero is 2^-64 unlikely). */
    assert_true(a[0] != 0 && a[1] != 0);
    assert_true(b[0] != 0 && b[1] != 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(siphash24_matches_published_reference_vectors),
        cmocka_unit_test(independent_model_agrees_with_published_vectors),
        cmocka_unit_test(siphash24_matches_independent_model_for_every_length_up_to_200),
        cmocka_unit_test(siphash24_matches_model_with_other_keys_and_unaligned_data),
        cmocka_unit_test(siphash24_depends_on_key_and_on_every_message_byte),
        cmocka_unit_test(random_key_differs_between_calls),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
