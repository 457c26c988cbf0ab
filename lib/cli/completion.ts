/**
 * `ocicache completion bash|zsh|fish`: a shell's completion script, made from
 * the same tables of commands and options as `--help` (`options.ts`), so an
 * option added there completes with no other change. It completes commands,
 * each command's options, option values (roles and other fixed choices,
 * platforms, unikraft's plats, directories and files), and references from
 * the cache: the scripts ask `ocicache completion references`, which reads
 * the cache's `index.json` and nothing else (offline, no lock).
 *
 * A name read from the cache reaches a shell: only names made of the
 * characters a reference may hold are printed, and the scripts match them as
 * plain text, never through `compgen -W` or `eval`, which would expand `$(…)`.
 *
 * @module
 */

import { EXIT_CODES, UsageError } from "../errors.ts";
import { REF_NAME_ANNOTATION } from "../oci/names.ts";
import { readIndex } from "../store/index-file.ts";
import type { Context } from "./context.ts";
import { COMMANDS, COMMON, type CommandName, OPTIONS } from "./options.ts";

/** The shells, and what else `completion` prints. */
const SHELLS = { bash: bashScript, zsh: zshScript, fish: fishScript };

/** Platforms offered for `--platform`, and unikraft's platforms for `--plat`. */
const PLATFORMS = ["linux/amd64", "linux/arm64", "amd64", "arm64"];
const PLATS = ["qemu", "fc", "xen"];

/** Commands whose arguments are references the cache may know. */
const TAKES_REFERENCES: readonly CommandName[] = ["pull", "path", "cat", "lock", "inspect", "tags", "rm", "doctor"];

/** A name safe to hand to a shell: what a reference or an `oci:DIR` source is made of, and no more. */
const SAFE_NAME = /^[A-Za-z0-9._:/@+\-[\]]{1,512}$/;

/** `ocicache completion SHELL` prints the script; `ocicache completion references` the cached references. */
export async function runCompletion(context: Context): Promise<number> {
  const [what, ...rest] = context.args;
  if (rest.length > 0 || what === undefined)
    throw new UsageError("Cannot run completion: expected one of bash, zsh, fish (or references)");
  if (what === "references") {
    context.print(cachedReferences(context.config.cacheDir).join("\n"));
    return EXIT_CODES.ok;
  }
  if (!Object.hasOwn(SHELLS, what))
    throw new UsageError(`Cannot make a completion script for "${what.slice(0, 40)}": expected bash, zsh or fish`);
  context.print(SHELLS[what as keyof typeof SHELLS]());
  return EXIT_CODES.ok;
}

/** The references `index.json` names, sorted, each one safe for a shell. */
function cachedReferences(cacheDir: string): string[] {
  const names = readIndex(cacheDir).map((entry) => entry.annotations[REF_NAME_ANNOTATION] ?? "");
  return [...new Set(names.filter((name) => SAFE_NAME.test(name)))].sort();
}

type OptionName = keyof typeof OPTIONS;

/** What a value of `option` completes to: a fixed list, directories, files, or nothing. */
function valueKind(option: OptionName): readonly string[] | "dir" | "file" | "none" | undefined {
  const spec: { type: string; value?: string; choices?: readonly string[] } = OPTIONS[option];
  if (spec.type === "boolean") return undefined;
  if (spec.choices !== undefined) return spec.choices;
  if (spec.value === "DIR") return "dir";
  if (spec.value === "FILE") return "file";
  if (spec.value === "OS/ARCH") return PLATFORMS;
  if (spec.value === "PLAT") return PLATS;
  return "none";
}

/** Every command with its options (its own and the common ones), in the table's order. */
function commandOptions(): Array<{ name: CommandName; summary: string; options: OptionName[] }> {
  return (Object.keys(COMMANDS) as CommandName[]).map((name) => ({
    name,
    summary: COMMANDS[name].summary,
    options: [...COMMANDS[name].options, ...COMMON],
  }));
}

function flagsOf(option: OptionName): string[] {
  const short: string | undefined = (OPTIONS[option] as { short?: string }).short;
  return short === undefined ? [`--${option}`] : [`--${option}`, `-${short}`];
}

/** Options that take a value, each with the words that name it. */
function valued(): Array<{ option: OptionName; flags: string[] }> {
  return (Object.keys(OPTIONS) as OptionName[])
    .filter((option) => valueKind(option) !== undefined)
    .map((option) => ({ option, flags: flagsOf(option) }));
}

function bashScript(): string {
  const values = valued().map(({ option, flags }) => {
    const kind = valueKind(option)!;
    const action =
      kind === "dir"
        ? 'compopt -o filenames 2>/dev/null; mapfile -t COMPREPLY < <(compgen -d -- "$cur")'
        : kind === "file"
          ? 'compopt -o filenames 2>/dev/null; mapfile -t COMPREPLY < <(compgen -f -- "$cur")'
          : kind === "none"
            ? "COMPREPLY=()"
            : `_ocicache_words "$cur" ${kind.join(" ")}`;
    return `    ${flags.join("|")}) ${action}; return ;;`;
  });
  const perCommand = commandOptions().map(
    ({ name, options }) => `      ${name}) opts="${options.flatMap(flagsOf).join(" ")}" ;;`,
  );
  return `# ocicache completion for bash (made by \`ocicache completion bash\`).
# Load it with: source <(ocicache completion bash)
# or save it as ~/.local/share/bash-completion/completions/ocicache

# Words of "$@" (after the first) that start with $1, added to COMPREPLY as they are: never expanded.
_ocicache_words() {
  local cur=$1 word
  shift
  for word in "$@"; do [[ "$word" == "$cur"* ]] && COMPREPLY+=("$word"); done
  return 0
}

_ocicache() {
  COMPREPLY=()
  # The words as the shell splits them on blanks: ':' and '=' (word breaks to readline) stay inside a word.
  local line="\${COMP_LINE:0:COMP_POINT}" words=() cur prev
  read -ra words <<<"$line"
  [[ "$line" == *[[:blank:]] ]] && words+=("")
  cur="\${words[\${#words[@]}-1]}"
  prev=""
  (( \${#words[@]} > 1 )) && prev="\${words[\${#words[@]}-2]}"
  if [[ "$cur" == --*=* ]]; then prev="\${cur%%=*}"; cur="\${cur#*=}"; fi
  _ocicache_values "$cur" "$prev" && return 0
  local command="" opts="" i
  for ((i = 1; i < \${#words[@]} - 1; i++)); do
    case "\${words[i]}" in
      ${valued()
        .flatMap((v) => v.flags)
        .join("|")}) ((i++)) ;;
      -*) ;;
      *) command="\${words[i]}"; break ;;
    esac
  done
  if [[ -z "$command" && "$cur" != -* ]]; then
    _ocicache_words "$cur" ${Object.keys(COMMANDS).join(" ")} help
  elif [[ "$cur" == -* ]]; then
    case "$command" in
${perCommand.join("\n")}
      *) opts="${COMMON.flatMap(flagsOf).join(" ")}" ;;
    esac
    _ocicache_words "$cur" $opts
  else
    case "$command" in
      ${TAKES_REFERENCES.join("|")})
        local name
        while IFS= read -r name; do
          [[ "$name" == "$cur"* ]] && COMPREPLY+=("$name")
        done < <(ocicache completion references 2>/dev/null) ;;
      completion) _ocicache_words "$cur" ${Object.keys(SHELLS).join(" ")} references ;;
      help) _ocicache_words "$cur" ${Object.keys(COMMANDS).join(" ")} ;;
    esac
  fi
  _ocicache_trim "$cur"
}

# The value of an option (prev), completed; false when prev takes none.
_ocicache_values() {
  local cur=$1 prev=$2
  case "$prev" in
${values.join("\n")}
  esac
  return 1
}

# Readline replaces only the part of a word after its last word break (':', '@', '=' by default): each reply loses
# what comes before it.
_ocicache_trim() {
  local cur=$1 prefix="" i
  for ((i = \${#cur} - 1; i >= 0; i--)); do
    if [[ "$COMP_WORDBREAKS" == *"\${cur:i:1}"* ]]; then prefix="\${cur:0:i+1}"; break; fi
  done
  [[ -n "$prefix" ]] || return 0
  for i in "\${!COMPREPLY[@]}"; do COMPREPLY[i]="\${COMPREPLY[i]#"$prefix"}"; done
}

complete -F _ocicache ocicache`;
}

/** Text inside a zsh `_arguments` spec or `_describe` item: its brackets, colons and quotes escaped. */
function zshText(text: string): string {
  return text.replace(/([[\]:\\])/g, "\\$1").replace(/'/g, "'\\''");
}

function zshAction(option: OptionName): string {
  const kind = valueKind(option);
  if (kind === undefined) return "";
  const value = (OPTIONS[option] as { value?: string }).value ?? "VALUE";
  if (kind === "dir") return `:${value}:_files -/`;
  if (kind === "file") return `:${value}:_files`;
  if (kind === "none") return `:${value}: `;
  return `:${value}:(${kind.join(" ")})`;
}

function zshScript(): string {
  const commands = commandOptions().map(({ name, summary }) => `    '${name}:${zshText(summary)}'`);
  const cases = commandOptions().map(({ name, options }) => {
    const specs = options.map((option) => {
      const help = zshText(OPTIONS[option].help);
      const flags = flagsOf(option);
      const action = zshAction(option);
      if (flags.length === 1) return `        '${flags[0]}[${help}]${action}'`;
      return `        '(${flags.join(" ")})'{${flags.join(",")}}'[${help}]${action}'`;
    });
    if (TAKES_REFERENCES.includes(name)) specs.push("        '*:reference:_ocicache_references'");
    if (name === "completion") specs.push(`        '1:shell:(${Object.keys(SHELLS).join(" ")} references)'`);
    return `    ${name})\n      _arguments -s \\\n${specs.join(" \\\n")} ;;`;
  });
  return `#compdef ocicache
# ocicache completion for zsh (made by \`ocicache completion zsh\`).
# Load it with: source <(ocicache completion zsh)
# or save it as _ocicache in a directory of $fpath.

_ocicache_references() {
  local -a names
  names=(\${(f)"$(ocicache completion references 2>/dev/null)"})
  compadd -- \${names[@]}
}

_ocicache() {
  local -a commands
  commands=(
${commands.join("\n")}
  )
  local i command=""
  for ((i = 2; i < CURRENT; i++)); do
    case "\${words[i]}" in
      (${valued()
        .flatMap((v) => v.flags)
        .join("|")}) ((i++)) ;;
      (-*) ;;
      (*) command=\${words[i]}; break ;;
    esac
  done
  if [[ -z "$command" ]]; then
    _describe -t commands 'ocicache command' commands
    return
  fi
  shift $((i - 1)) words
  (( CURRENT -= i - 1 ))
  case "$command" in
${cases.join("\n")}
    help) _describe -t commands 'ocicache command' commands ;;
  esac
}

if [[ "$funcstack[1]" == "_ocicache" ]]; then
  _ocicache "$@"
else
  compdef _ocicache ocicache
fi`;
}

/** Text inside single quotes for fish. */
function fishText(text: string): string {
  return text.replace(/\\/g, "\\\\").replace(/'/g, "\\'");
}

function fishScript(): string {
  const names = Object.keys(COMMANDS).join(" ");
  const lines = commandOptions().map(
    ({ name, summary }) => `complete -c ocicache -n '__fish_use_subcommand' -f -a ${name} -d '${fishText(summary)}'`,
  );
  for (const { name, options } of commandOptions()) {
    for (const option of options) {
      const short = (OPTIONS[option] as { short?: string }).short;
      const kind = valueKind(option);
      const value =
        kind === undefined
          ? ""
          : kind === "dir"
            ? " -r -a '(__fish_complete_directories)'"
            : kind === "file"
              ? " -r -F"
              : kind === "none"
                ? " -x"
                : ` -x -a '${kind.join(" ")}'`;
      lines.push(
        `complete -c ocicache -n '__fish_seen_subcommand_from ${name}' -l ${option}` +
          `${short === undefined ? "" : ` -s ${short}`}${value} -d '${fishText(OPTIONS[option].help)}'`,
      );
    }
  }
  return `# ocicache completion for fish (made by \`ocicache completion fish\`).
# Load it with: ocicache completion fish | source
# or save it as ~/.config/fish/completions/ocicache.fish

complete -c ocicache -e
${lines.join("\n")}
complete -c ocicache -n '__fish_seen_subcommand_from ${TAKES_REFERENCES.join(" ")}' -f \\
  -a '(ocicache completion references 2>/dev/null)' -d reference
complete -c ocicache -n '__fish_seen_subcommand_from completion' -f -a '${Object.keys(SHELLS).join(" ")} references'
complete -c ocicache -n '__fish_seen_subcommand_from help' -f -a '${names}'`;
}
