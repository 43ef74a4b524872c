// Reads a text/event-stream response into events (id, event, data).
export interface SseEvent {
  id: string | undefined;
  event: string;
  data: any; // eslint-disable-line @typescript-eslint/no-explicit-any
}

export async function* sseEvents(res: Response): AsyncGenerator<SseEvent> {
  const reader = res.body!.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  while (true) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let index: number;
    while ((index = buffer.indexOf('\n\n')) >= 0) {
      const block = buffer.slice(0, index);
      buffer = buffer.slice(index + 2);
      let id: string | undefined;
      let event = 'message';
      const data: string[] = [];
      for (const line of block.split('\n')) {
        if (line.startsWith(':')) continue;
        if (line.startsWith('id: ')) id = line.slice(4);
        else if (line.startsWith('event: ')) event = line.slice(7);
        else if (line.startsWith('data: ')) data.push(line.slice(6));
      }
      if (data.length) yield { id, event, data: JSON.parse(data.join('\n')) };
    }
  }
}

export async function collectSse(res: Response, options: { stopAfter?: number } = {}): Promise<SseEvent[]> {
  const events: SseEvent[] = [];
  for await (const event of sseEvents(res)) {
    events.push(event);
    if (options.stopAfter && events.length >= options.stopAfter) break;
  }
  return events;
}
