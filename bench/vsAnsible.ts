// The ringtail stack on the real Pulumi engine side by side with the Ansible play it replaces,
// against the same SSH test host (fish login shell, sudo, the nixos-rebuild/systemctl stand-ins),
// the same 1Password Connect stand-in and the same key: no-op and rotation, wall time and SSH
// sessions (counted from sshd's own log), as ratios.
//
//   node --import tsx bench/vsAnsible.ts [rounds]        (default 5; as root)
//
// The play does what the stack does on the host, with Ansible's usual modules: read the key from
// 1Password (Connect, on the control node), `copy` it 0600 root with `no_log`, then
// `nixos-rebuild switch` and restart the unit when the file changed. ansible-core comes from PyPI
// into ~/.cache/runner-secrets-bench (a venv, once). Pulumi runs through the Automation API (an
// inline program: no language host here), which is what the e2e tier runs.
import { execFileSync, spawn } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

import { ringtailProject, startWorld, FLAKE, ITEM, UNIT, VAULT } from "../test/e2e/support/ringtailWorld";

const ANSIBLE_VERSION = "2.19.14";
const VENV = path.join(os.homedir(), ".cache", "runner-secrets-bench", `ansible-${ANSIBLE_VERSION}`);

function ensureAnsible(): string {
  const bin = path.join(VENV, "bin", "ansible-playbook");
  if (!fs.existsSync(bin)) {
    execFileSync("python3", ["-m", "venv", VENV], { stdio: "inherit" });
    execFileSync(path.join(VENV, "bin", "pip"), ["install", "-q", `ansible-core==${ANSIBLE_VERSION}`], { stdio: "inherit" });
  }
  return bin;
}

const PLAY = `- hosts: ringtail
  gather_facts: false
  vars:
    connect: "{{ lookup('env', 'CONNECT_URL') }}"
    auth: { Authorization: "Bearer {{ lookup('env', 'CONNECT_TOKEN') }}" }
  tasks:
    - name: 1Password vault
      ansible.builtin.uri: { url: "{{ connect }}/v1/vaults?filter=title%20eq%20%22${VAULT}%22", headers: "{{ auth }}" }
      delegate_to: localhost
      register: vaults
    - name: 1Password item
      ansible.builtin.uri: { url: "{{ connect }}/v1/vaults/{{ vaults.json[0].id }}/items?filter=title%20eq%20%22${ITEM}%22", headers: "{{ auth }}" }
      delegate_to: localhost
      register: items
    - name: the key
      ansible.builtin.uri: { url: "{{ connect }}/v1/vaults/{{ vaults.json[0].id }}/items/{{ items.json[0].id }}", headers: "{{ auth }}" }
      delegate_to: localhost
      register: item
      no_log: true
    - name: env file
      ansible.builtin.copy:
        content: "ZOT_CI_API_KEY={{ (item.json.fields | selectattr('label', 'equalto', 'credential') | first).value }}\\n"
        dest: "{{ env_file }}"
        owner: root
        group: root
        mode: "0600"
      become: true
      no_log: true
      register: envfile
    - name: nixos-rebuild switch
      ansible.builtin.command: nixos-rebuild switch --flake ${FLAKE}
      become: true
      when: envfile.changed
    - name: restart the runner
      ansible.builtin.command: systemctl restart ${UNIT}
      become: true
      when: envfile.changed
`;

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

function run(cmd: string, args: string[], env: NodeJS.ProcessEnv): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    child.stderr.on("data", (d: Buffer) => (out += d.toString()));
    child.on("error", reject);
    child.on("close", (code) => (code === 0 ? resolve(out) : reject(new Error(`${cmd} exited ${code}:\n${out.slice(-3000)}`))));
  });
}

async function main(): Promise<void> {
  const rounds = Number(process.argv[2] ?? "5");
  const playbook = ensureAnsible();
  const world = await startWorld();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "rs-bench-ansible-"));
  try {
    const host = world.host;
    const r = await ringtailProject(world, "bench-pulumi");
    const ansibleFile = path.posix.join(host.root, "bench-ansible", "etc", "forgejo-runner", "zot-api-key.env");
    fs.mkdirSync(path.dirname(ansibleFile), { recursive: true, mode: 0o700 });
    fs.writeFileSync(path.join(dir, "known_hosts"), `[${host.host}]:${host.port} ${host.hostKey}\n`);
    fs.writeFileSync(path.join(dir, "play.yaml"), PLAY);
    fs.writeFileSync(
      path.join(dir, "inventory.ini"),
      `ringtail ansible_host=${host.host} ansible_port=${host.port} ansible_user=${host.users.fish} ` +
        `ansible_ssh_private_key_file=${host.clientKeyPath} ansible_python_interpreter=/usr/bin/python3 env_file=${ansibleFile}\n`,
    );
    const env = {
      ...process.env,
      ANSIBLE_SSH_ARGS: `-C -o ControlMaster=auto -o ControlPersist=60s -o UserKnownHostsFile=${dir}/known_hosts -o StrictHostKeyChecking=yes`,
      ANSIBLE_LOCAL_TEMP: path.join(dir, "tmp"),
      ANSIBLE_NOCOLOR: "1",
      CONNECT_URL: world.connect.url,
      CONNECT_TOKEN: world.connect.token,
    };
    const ansible = () => run(playbook, ["-i", path.join(dir, "inventory.ini"), path.join(dir, "play.yaml")], env);

    const measure = async (f: () => Promise<unknown>) => {
      r.sessions();
      const t = process.hrtime.bigint();
      await f();
      return { ms: Number(process.hrtime.bigint() - t) / 1e6, sessions: r.sessions() };
    };
    const pulumiUp = async () => {
      const u = await r.project.up();
      if (u.error) throw new Error(u.output);
    };

    // First runs (not timed): both tools then hold the current key.
    await pulumiUp();
    await ansible();
    const results: Record<string, { ms: number[]; sessions: number[] }> = {};
    const add = (name: string, x: { ms: number; sessions: number }) => {
      results[name] ??= { ms: [], sessions: [] };
      const e = results[name];
      e.ms.push(x.ms);
      e.sessions.push(x.sessions);
    };
    for (let i = 0; i < rounds; i++) {
      add("pulumi no-op", await measure(pulumiUp));
      add("ansible no-op", await measure(ansible));
      await world.rotate();
      add("pulumi rotation", await measure(pulumiUp));
      add("ansible rotation", await measure(ansible));
    }
    const m = (k: string) => median(results[k].ms);
    const s = (k: string) => median(results[k].sessions);
    console.log(`ringtail stack vs Ansible ${ANSIBLE_VERSION}, ${rounds} rounds (medians), same host, key and 1Password:`);
    for (const phase of ["no-op", "rotation"]) {
      const p = `pulumi ${phase}`;
      const a = `ansible ${phase}`;
      console.log(
        `  ${phase.padEnd(8)} pulumi ${(m(p) / 1000).toFixed(2)} s, ${s(p)} SSH sessions | ansible ${(m(a) / 1000).toFixed(2)} s, ` +
          `${s(a)} SSH sessions | time ratio pulumi/ansible ${(m(p) / m(a)).toFixed(2)}`,
      );
    }
    await r.project.destroy();
    await r.project.remove();
  } finally {
    await world.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
