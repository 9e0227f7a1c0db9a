// runner-secrets: puts the zot registry key from 1Password on one Forgejo runner per stack.
import * as pulumi from "@pulumi/pulumi";
import { readStackConfig } from "./lib/config";
import { KubernetesTarget } from "./components/kubernetes";
import { NixosTarget } from "./components/nixos";
import { RunnerRegistryAuth } from "./components/runnerRegistryAuth";

// Validates everything (and the kube context) before a single resource is registered.
const config = readStackConfig();
const target =
  config.target === "kubernetes"
    ? new KubernetesTarget(config.kubernetes, { preview: pulumi.runtime.isDryRun() })
    : new NixosTarget(config.nixos, config.secrets.sshPrivateKey);

const auth = new RunnerRegistryAuth("zot-ci", {
  onePassword: config.onePassword,
  onePasswordToken: config.secrets.onePasswordToken,
  envVar: config.envVar,
  registryCheck: config.registryCheck,
  target,
});

export const targetKind = auth.targetKind;
export const location = auth.location;
export const keyDigest = auth.keyDigest;
export const onePasswordItemId = auth.itemId;
