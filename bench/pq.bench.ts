// Post-quantum costs beside their classical counterparts (issue #17), medians of repeated runs:
//   seal/open of a provisioning-sized bundle: hybrid ML-KEM-768 + P-384 (hybridSeal/hybridOpen) vs the
//   classical ECDH-ES+A256KW JWE to the same P-384 key (sealResponse / jose compactDecrypt);
//   workload-token signatures: ML-DSA-65 (RFC 9964 JWS, @noble/post-quantum) vs ES384 (jose, node:crypto)
//   and EdDSA, sign and verify.
// Printed as ratios (PQ / classical); nothing here is asserted.
import { generateKeyPairSync, randomBytes } from "node:crypto";
import { ml_kem768 } from "@noble/post-quantum/ml-kem.js";
import { SignJWT, compactDecrypt, createLocalJWKSet, jwtVerify, type JWK } from "jose";
import { table, timeit } from "./lib.ts";
import { hybridOpen, hybridSeal } from "../dist/runtime/attestation/hybrid-seal.js";
import { sealResponse } from "../dist/runtime/server/nitride/seal.js";
import {
  akpPrivateKey,
  generateAkpKeyPair,
  signMlDsaJws,
  verifyMlDsaJwt,
} from "../dist/runtime/attestation/ml-dsa-jose.js";

const bundle = {
  kv: { "secret/data/web/db": { password: randomBytes(24).toString("base64") } },
  disk_key: randomBytes(32).toString("base64"),
  pki: { certificate: "x".repeat(1500), private_key: "y".repeat(300) },
};
const { privateKey: p384, publicKey: p384Pub } = generateKeyPairSync("ec", { namedCurve: "P-384" });
const p384Jwk = p384Pub.export({ format: "jwk" }) as JWK;
const kem = ml_kem768.keygen();

const hybridSealed = await hybridSeal(bundle, p384Jwk, kem.publicKey);
const classicSealed = await sealResponse(bundle, p384Jwk);
const sealRows = [
  {
    what: "seal",
    classical: await timeit(() => sealResponse(bundle, p384Jwk)),
    pq: await timeit(() => hybridSeal(bundle, p384Jwk, kem.publicKey)),
  },
  {
    what: "open",
    classical: await timeit(() => compactDecrypt(classicSealed, p384)),
    pq: await timeit(() => hybridOpen(hybridSealed, { p384PrivateKey: p384, mlkemSecretKey: kem.secretKey })),
  },
];
console.log("bundle sealing: ECDH-ES+A256KW (P-384) vs hybrid ML-KEM-768 + P-384");
table(
  sealRows.map((r) => ({
    op: r.what,
    "classical ms": r.classical.medianMs,
    "hybrid ms": r.pq.medianMs,
    "hybrid / classical": r.pq.medianMs / r.classical.medianMs,
    "sealed bytes (classical → hybrid)": r.what === "seal" ? `${classicSealed.length} → ${hybridSealed.length}` : "",
  })),
);

const claims = {
  iss: "https://bench/v1/nitride",
  sub: "web",
  aud: "buckypaper",
  exp: Math.floor(Date.now() / 1000) + 300,
};
const payload = new TextEncoder().encode(JSON.stringify(claims));
const es = generateKeyPairSync("ec", { namedCurve: "P-384" });
const ed = generateKeyPairSync("ed25519");
const esJwks = createLocalJWKSet({
  keys: [{ ...(es.publicKey.export({ format: "jwk" }) as JWK), alg: "ES384", kid: "es" }],
});
const edJwks = createLocalJWKSet({
  keys: [{ ...(ed.publicKey.export({ format: "jwk" }) as JWK), alg: "EdDSA", kid: "ed" }],
});
const ml = generateAkpKeyPair();
const mlSk = akpPrivateKey(ml.privateJwk).secretKey;
const mlKeys = [{ ...ml.publicJwk, kid: "ml" }];
const signEs = () =>
  new SignJWT(claims).setProtectedHeader({ alg: "ES384", kid: "es", typ: "JWT" }).sign(es.privateKey);
const signEd = () =>
  new SignJWT(claims).setProtectedHeader({ alg: "EdDSA", kid: "ed", typ: "JWT" }).sign(ed.privateKey);
const signMl = () => signMlDsaJws({ alg: "ML-DSA-65", kid: "ml", typ: "JWT" }, payload, mlSk);
const esTok = await signEs();
const edTok = await signEd();
const mlTok = signMl();
const es384 = { sign: await timeit(signEs), verify: await timeit(() => jwtVerify(esTok, esJwks)) };
const eddsa = { sign: await timeit(signEd), verify: await timeit(() => jwtVerify(edTok, edJwks)) };
const mldsa = { sign: await timeit(signMl), verify: await timeit(() => verifyMlDsaJwt(mlTok, mlKeys)) };
console.log("\nworkload-token JWS: ES384 / EdDSA (jose + node:crypto) vs ML-DSA-65 (@noble/post-quantum)");
table(
  (["sign", "verify"] as const).map((op) => ({
    op,
    "ES384 ms": es384[op].medianMs,
    "EdDSA ms": eddsa[op].medianMs,
    "ML-DSA-65 ms": mldsa[op].medianMs,
    "ML-DSA / ES384": mldsa[op].medianMs / es384[op].medianMs,
    "ML-DSA / EdDSA": mldsa[op].medianMs / eddsa[op].medianMs,
  })),
);
console.log(`token bytes: ES384 ${esTok.length}, EdDSA ${edTok.length}, ML-DSA-65 ${mlTok.length}`);
