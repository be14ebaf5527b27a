// The ceiling: an empty JavaScript Worker that reads the body and answers 204.
export default {
  async fetch(request) {
    await request.arrayBuffer();
    return new Response(null, { status: 204 });
  },
};
