// The ```sh examples of a Markdown file, for tests that run documentation as written.

export interface Block {
  line: number;
  commands: string[];
}

/** The ```sh blocks of a Markdown text, with `\`-continued lines joined into one command each. */
export function shellBlocks(markdown: string): Block[] {
  const blocks: Block[] = [];
  const lines = markdown.split("\n");
  for (let i = 0; i < lines.length; i++) {
    if (lines[i].trim() !== "```sh") continue;
    const block: Block = { line: i + 1, commands: [] };
    let pending = "";
    for (i++; i < lines.length && lines[i].trim() !== "```"; i++) {
      const l = lines[i];
      if (l.endsWith("\\")) pending += l.slice(0, -1);
      else {
        block.commands.push(pending + l);
        pending = "";
      }
    }
    blocks.push(block);
  }
  return blocks;
}
