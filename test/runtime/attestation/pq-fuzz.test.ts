// Property-based fuzzing (fast-check) of the post-quantum parsers: the hybrid seal's protected header
// (hybridOpen), AKP JWK import, the ML-DSA-65 compact JWS/JWT verifier, and transit's
// "vault:v<N>:<base64>" ciphertext/signature strings and bodies. Every bad input must end in the parser's
// own typed error (never a TypeError or a crash), and no mutation of a genuine object may be accepted.
import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { generateKeyPairSync } from "node:crypto";
import { errors as joseErrors, type JWK } from "jose";
import { ml_kem768 } from "@noble/post-quantum/ml-kem.js";
import { HybridSealError, hybridOpen, hybridSeal } from "../../../runtime/attestation/hybrid-seal.js";
import {
  akpPrivateKey,
  akpPublicKey,
  generateAkpKeyPair,
  JoseFormatError,
  JwsVerificationError,
  parseCompactJws,
  signMlDsaJws,
  verifyMlDsaJwt,
} from "../../../runtime/attestation/ml-dsa-jose.js";
import {
  decryptBody,
  encryptBody,
  newKeyVersion,
  parseVaultString,
  verifyWith,
} from "../../../runtime/server/vault/engines/transit-keys.js";
import { LogicalError } from "../../../runtime/server/vault/backend.js";

const RUNS = 150;

async function typed(fn: () => unknown, ...types: Array<new (...a: never[]) => Error>): Promise<"ok" | "refused"> {
  try {
    await fn();
    return "ok";
  } catch (e) {
    if (!types.some((t) => e instanceof t))
      throw new Error(`untyped ${(e as Error)?.name}: ${(e as Error)?.message}`, { cause: e });
    return "refused";
  }
}

const b64u = (o: unknown) => Buffer.from(JSON.stringify(o)).toString("base64url");

describe("hybridOpen (hybrid seal header and body)", async () => {
  const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "P-384" });
  const kem = ml_kem768.keygen();
  const recipient = { p384PrivateKey: privateKey, mlkemSecretKey: kem.secretKey };
  const sealed = await hybridSeal({ secret: "s" }, publicKey.export({ format: "jwk" }) as JWK, kem.publicKey);
  const [h, ...rest] = sealed.split(".");
  const header = JSON.parse(Buffer.from(h, "base64url").toString()) as Record<string, unknown>;

  it("opens the genuine seal", async () => {
    expect(await hybridOpen(sealed, recipient)).toEqual({ secret: "s" });
  });

  it("random header members (types and values) are refused with typed errors", async () => {
    const value = fc.oneof(fc.string(), fc.integer(), fc.constant(null), fc.boolean(), fc.object(), fc.base64String());
    await fc.assert(
      fc.asyncProperty(fc.constantFrom("bp_kem", "bp_mlkem_ct", "epk", "alg", "enc"), value, async (member, v) => {
        const forged = `${b64u({ ...header, [member]: v })}.${rest.join(".")}`;
        expect(await typed(() => hybridOpen(forged, recipient), HybridSealError, joseErrors.JOSEError)).toBe("refused");
      }),
      { numRuns: RUNS },
    );
  });

  it("an ML-KEM ciphertext or epk of the right shape but other bytes never opens", async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 0, max: 1087 }), fc.integer({ min: 1, max: 255 }), async (at, x) => {
        const ct = Buffer.from(header.bp_mlkem_ct as string, "base64url");
        ct[at] ^= x;
        const forged = `${b64u({ ...header, bp_mlkem_ct: ct.toString("base64url") })}.${rest.join(".")}`;
        expect(await typed(() => hybridOpen(forged, recipient), HybridSealError, joseErrors.JOSEError)).toBe("refused");
      }),
      { numRuns: 60 },
    );
  });

  it("arbitrary strings are refused with typed errors", async () => {
    await fc.assert(
      fc.asyncProperty(fc.string({ maxLength: 300 }), async (s) => {
        expect(await typed(() => hybridOpen(s, recipient), HybridSealError, joseErrors.JOSEError)).toBe("refused");
      }),
      { numRuns: RUNS },
    );
  });
});

describe("AKP JWK import (RFC 9964)", () => {
  const kp = generateAkpKeyPair();
  it("accepts the genuine public and private JWK", () => {
    expect(akpPublicKey(kp.publicJwk).length).toBe(1952);
    expect(akpPrivateKey(kp.privateJwk).publicKey).toEqual(akpPublicKey(kp.publicJwk));
  });

  it("arbitrary JSON values and mutated members fail with JoseFormatError", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          fc.jsonValue(),
          fc.record({ kty: fc.constantFrom("AKP", "EC", "OKP", ""), alg: fc.string(), pub: fc.string() }),
          fc
            .tuple(fc.constantFrom("kty", "alg", "pub", "priv"), fc.oneof(fc.string(), fc.integer(), fc.base64String()))
            .map(([k, v]) => ({ ...kp.privateJwk, [k]: v })),
        ),
        async (jwk) => {
          await typed(() => akpPublicKey(jwk), JoseFormatError);
          await typed(() => akpPrivateKey(jwk), JoseFormatError);
        },
      ),
      { numRuns: RUNS },
    );
  });

  it("a priv that is not pub's seed is refused", async () => {
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ minLength: 32, maxLength: 32 }), async (seed) => {
        const other = Buffer.from(seed).toString("base64url");
        if (other === kp.privateJwk.priv) return;
        expect(() => akpPrivateKey({ ...kp.privateJwk, priv: other })).toThrow(/not the public key of priv/);
      }),
      { numRuns: 20 },
    );
  });
});

describe("ML-DSA-65 compact JWS / JWT verification", () => {
  const kp = generateAkpKeyPair();
  const keys = [{ ...kp.publicJwk, kid: "k" }];
  const sk = akpPrivateKey(kp.privateJwk).secretKey;
  const jwt = signMlDsaJws({ alg: "ML-DSA-65", kid: "k" }, Buffer.from(JSON.stringify({ iss: "i", sub: "s" })), sk);

  it("verifies the genuine token", () => {
    expect(verifyMlDsaJwt(jwt, keys, { issuer: "i" }).claims).toEqual({ iss: "i", sub: "s" });
  });

  it("arbitrary strings and dot-joined parts fail typed", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          fc.string({ maxLength: 400 }),
          fc.array(fc.base64String(), { minLength: 1, maxLength: 4 }).map((a) => a.join(".")),
          fc.jsonValue().map((v) => `${b64u(v)}.${jwt.split(".")[1]}.${jwt.split(".")[2]}`),
        ),
        async (s) => {
          expect(await typed(() => verifyMlDsaJwt(s, keys), JoseFormatError, JwsVerificationError)).toBe("refused");
          await typed(() => parseCompactJws(s), JoseFormatError);
        },
      ),
      { numRuns: RUNS },
    );
  });

  it("no single-character change of the token verifies", async () => {
    await fc.assert(
      fc.asyncProperty(fc.nat(jwt.length - 1), fc.constantFrom(..."ABCabc012-_."), async (at, c) => {
        if (jwt[at] === c) return;
        const m = jwt.slice(0, at) + c + jwt.slice(at + 1);
        // (a change in the last base64url character may leave the decoded bytes equal: canonical check refuses it)
        expect(await typed(() => verifyMlDsaJwt(m, keys), JoseFormatError, JwsVerificationError)).toBe("refused");
      }),
      { numRuns: 80 },
    );
  });
});

describe("transit vault:v<N>:<base64> strings and bodies", () => {
  it("parseVaultString: arbitrary strings give a 400 LogicalError or a version ≥ 1", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          fc.string({ maxLength: 100 }),
          fc.tuple(fc.string({ maxLength: 12 }), fc.base64String()).map(([v, b]) => `vault:v${v}:${b}`),
        ),
        async (s) => {
          try {
            const p = parseVaultString(s, "ciphertext");
            expect(p.version).toBeGreaterThanOrEqual(1);
          } catch (e) {
            expect(e).toBeInstanceOf(LogicalError);
            expect((e as LogicalError).status).toBe(400);
          }
        },
      ),
      { numRuns: RUNS * 2 },
    );
  });

  const aes = newKeyVersion("aes256-gcm96");
  const kem = newKeyVersion("ml-kem-768-x25519");
  const dsa = newKeyVersion("ml-dsa-65");
  it("decryptBody: random and mutated bodies are 400s, never plaintext", async () => {
    const genuine = encryptBody("ml-kem-768-x25519", kem, Buffer.from("p"), Buffer.alloc(0));
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          fc.uint8Array({ maxLength: 1300 }).map((b) => Buffer.from(b)),
          fc.tuple(fc.nat(genuine.length - 1), fc.integer({ min: 1, max: 255 })).map(([at, x]) => {
            const b = Buffer.from(genuine);
            b[at] ^= x;
            return b;
          }),
        ),
        fc.constantFrom("aes256-gcm96" as const, "ml-kem-768-x25519" as const),
        async (body, type) => {
          expect(
            await typed(
              () => decryptBody(type, type === "aes256-gcm96" ? aes : kem, body, Buffer.alloc(0)),
              LogicalError,
            ),
          ).toBe("refused");
        },
      ),
      { numRuns: 100 },
    );
  });

  it("verifyWith: random signature bytes are false, never a throw", async () => {
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ maxLength: 3400 }), async (sig) => {
        expect(verifyWith(dsa, Buffer.from("m"), Buffer.from(sig))).toBe(false);
      }),
      { numRuns: 60 },
    );
  });
});
