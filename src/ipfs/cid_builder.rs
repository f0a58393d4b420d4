//! Streaming computation of the CIDv1 that Kubo assigns to a file added with raw leaves.

use cid::multihash::Multihash;
use cid::Cid;
use sha2::{Digest, Sha256};

/// Multicodec code of a raw binary block, which is how raw leaves are addressed.
const RAW_CODEC: u64 = 0x55;
/// Multicodec code of a dag-pb block, which is how inner UnixFS nodes are addressed.
const DAG_PB_CODEC: u64 = 0x70;
/// Multihash code of sha2-256.
const SHA2_256_CODE: u64 = 0x12;

/// UnixFS `Data.Type` value for a file (`DataType.File`).
const UNIXFS_TYPE_FILE: u64 = 2;

/// Protobuf tags (field number << 3 | wire type) of the fields written here.
/// In dag-pb, `PBNode.Data` is field 1 and `PBNode.Links` field 2, both length-delimited.
const TAG_PBNODE_DATA: u8 = 0x0a;
const TAG_PBNODE_LINKS: u8 = 0x12;
/// In dag-pb, `PBLink.Hash` is field 1 (bytes), `Name` field 2 (string), `Tsize` field 3 (varint).
const TAG_PBLINK_HASH: u8 = 0x0a;
const TAG_PBLINK_NAME: u8 = 0x12;
const TAG_PBLINK_TSIZE: u8 = 0x18;
/// In UnixFS, `Data.Type` is field 1, `filesize` field 3 and `blocksizes` field 4, all varints.
const TAG_UNIXFS_TYPE: u8 = 0x08;
const TAG_UNIXFS_FILESIZE: u8 = 0x18;
const TAG_UNIXFS_BLOCKSIZE: u8 = 0x20;

/// Chunking and fan-out parameters of the DAG. The hash is always sha2-256.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CidOptions {
    /// Size in bytes of each leaf, as Kubo's `--chunker=size-N` sets it. Only the last leaf may
    /// be shorter.
    pub chunk_size: usize,
    /// Maximum number of links in an inner node. Kubo's balanced layout uses 174.
    pub max_links: usize,
}

impl Default for CidOptions {
    /// Kubo's defaults: 256 KiB chunks and 174 links per node.
    fn default() -> Self {
        Self {
            chunk_size: 262_144,
            max_links: 174,
        }
    }
}

/// Reference from an inner node to one child block.
#[derive(Clone, Debug)]
struct Link {
    cid: Cid,
    /// Bytes of the child block plus the `tsize` of all its links, as dag-pb's `Tsize` defines it.
    tsize: u64,
    /// Bytes of file content under the child, which the parent lists in UnixFS `blocksizes`.
    file_size: u64,
}

/// Incremental builder of a file's CID: feed the content with [`CidBuilder::update`] in slices
/// of any size, then call [`CidBuilder::finish`].
///
/// It reproduces the balanced DAG of go-unixfs (boxo `importer/balanced`) as built by
/// `ipfs add --cid-version=1 --raw-leaves --chunker=size-262144`. Fixed-size chunks become raw
/// leaves (codec 0x55), and every inner node is a dag-pb block (codec 0x70) that carries a UnixFS
/// `File` message. Hashing is sha2-256 throughout. Only CIDs are computed and no block is stored,
/// so the builder keeps at most `max_links` links per tree level and none of the file's bytes.
///
/// All leaves sit at the same depth. Each inner node takes up to `max_links` children from left
/// to right. When the tree is full and more data arrives, the old root becomes the first child of
/// a new root one level higher. Each later child of that root is a subtree of full height, even
/// when it covers a single chunk.
#[derive(Clone, Debug)]
pub struct CidBuilder {
    options: CidOptions,
    /// Hasher of the chunk being read. Raw leaves are hashed as they arrive and never buffered.
    leaf_hasher: Sha256,
    leaf_len: usize,
    bytes_seen: u64,
    /// `levels[0]` contains the leaves of the height-1 node being filled, `levels[1]` the height-1
    /// nodes of the height-2 node being filled, and so on. A full level is sealed only when
    /// another link must join it, because a full root gets a parent only if more data follows.
    levels: Vec<Vec<Link>>,
    /// Encoding buffer reused for every inner node.
    node_bytes: Vec<u8>,
}

impl CidBuilder {
    /// Creates a builder for one file.
    ///
    /// # Panics
    /// If `chunk_size` is 0 or `max_links` is below 2, because no finite balanced DAG exists then.
    pub fn new(options: CidOptions) -> Self {
        assert!(
            options.chunk_size > 0,
            "CidOptions::chunk_size must be at least 1 byte"
        );
        assert!(
            options.max_links >= 2,
            "CidOptions::max_links must be at least 2, got {}",
            options.max_links
        );
        Self {
            options,
            leaf_hasher: Sha256::new(),
            leaf_len: 0,
            bytes_seen: 0,
            levels: Vec::new(),
            node_bytes: Vec::new(),
        }
    }

    /// Adds the next bytes of the file. Slice boundaries do not affect the result.
    pub fn update(&mut self, mut data: &[u8]) {
        self.bytes_seen += data.len() as u64;
        while !data.is_empty() {
            let room = self.options.chunk_size - self.leaf_len;
            let (head, rest) = data.split_at(room.min(data.len()));
            self.leaf_hasher.update(head);
            self.leaf_len += head.len();
            data = rest;

            // A full chunk is a leaf whatever follows, so it is closed at once.
            if self.leaf_len == self.options.chunk_size {
                self.close_leaf();
            }
        }
    }

    /// Returns the number of bytes passed to [`CidBuilder::update`] so far.
    pub fn bytes_seen(&self) -> u64 {
        self.bytes_seen
    }

    /// Seals the DAG and returns the CIDv1 of its root.
    ///
    /// A file of at most `chunk_size` bytes, the empty file included, is a single raw leaf
    /// (codec 0x55). A larger file has a dag-pb root (codec 0x70).
    pub fn finish(mut self) -> Cid {
        if self.leaf_len > 0 {
            self.close_leaf();
        }

        // The empty file: Kubo stores one empty raw leaf.
        if self.levels.is_empty() {
            return raw_leaf_cid(self.leaf_hasher);
        }

        // One chunk: the leaf is the root, with no node above it.
        if self.levels.len() == 1 && self.levels[0].len() == 1 {
            return self.levels[0][0].cid;
        }

        // Seal the open node of every level from the bottom up. Each level below the top
        // contains at least one link, and the top level ends up with at least two, so the top
        // node is the root that boxo's layout ends with.
        let mut height = 0;
        loop {
            let node = self.seal_level(height);
            if height + 1 == self.levels.len() {
                return node.cid;
            }
            self.push_link(height + 1, node);
            height += 1;
        }
    }

    fn close_leaf(&mut self) {
        let hasher = std::mem::take(&mut self.leaf_hasher);
        let size = self.leaf_len as u64;
        self.leaf_len = 0;
        let leaf = Link {
            cid: raw_leaf_cid(hasher),
            tsize: size,
            file_size: size,
        };
        self.push_link(0, leaf);
    }

    /// Appends `link` to the node being filled at `level`, first sealing that node into its
    /// parent when it already has `max_links` links.
    fn push_link(&mut self, level: usize, link: Link) {
        if level == self.levels.len() {
            self.levels.push(Vec::with_capacity(self.options.max_links));
        }
        if self.levels[level].len() == self.options.max_links {
            let node = self.seal_level(level);
            self.push_link(level + 1, node);
        }
        self.levels[level].push(link);
    }

    /// Encodes the links collected at `level` as one dag-pb node, empties the level and returns
    /// the link to the new node.
    fn seal_level(&mut self, level: usize) -> Link {
        let mut links = std::mem::take(&mut self.levels[level]);
        encode_file_node(&links, &mut self.node_bytes);

        let children_tsize: u64 = links.iter().map(|link| link.tsize).sum();
        let file_size: u64 = links.iter().map(|link| link.file_size).sum();
        let digest = Sha256::digest(&self.node_bytes);

        // Give the emptied level its allocation back for the next node.
        links.clear();
        self.levels[level] = links;

        Link {
            cid: Cid::new_v1(DAG_PB_CODEC, sha2_256_multihash(&digest)),
            tsize: self.node_bytes.len() as u64 + children_tsize,
            file_size,
        }
    }
}

fn raw_leaf_cid(hasher: Sha256) -> Cid {
    Cid::new_v1(RAW_CODEC, sha2_256_multihash(&hasher.finalize()))
}

fn sha2_256_multihash(digest: &[u8]) -> Multihash<64> {
    Multihash::wrap(SHA2_256_CODE, digest).expect("a 32-byte digest fits a 64-byte multihash")
}

/// Writes the dag-pb bytes of an inner UnixFS file node over `links` into `out`.
///
/// The byte layout follows what Kubo (boxo merkledag through go-codec-dagpb) produces, since the
/// CID depends on every byte. Links come before Data, the canonical dag-pb field order. Each link
/// carries Hash, an empty Name (Kubo writes the field even when the name is empty) and Tsize.
/// The UnixFS message has Type=File, filesize and one unpacked `blocksizes` entry per link. It has
/// no `Data` field because inner nodes hold no file bytes.
fn encode_file_node(links: &[Link], out: &mut Vec<u8>) {
    out.clear();
    for link in links {
        let cid_len = link.cid.encoded_len();
        let link_len = 1 + varint_len(cid_len as u64) + cid_len // Hash
            + 2 // Name, empty
            + 1 + varint_len(link.tsize); // Tsize

        out.push(TAG_PBNODE_LINKS);
        write_varint(out, link_len as u64);
        out.push(TAG_PBLINK_HASH);
        write_varint(out, cid_len as u64);
        link.cid
            .write_bytes(&mut *out)
            .expect("writing a CID to a Vec cannot fail");
        out.push(TAG_PBLINK_NAME);
        out.push(0);
        out.push(TAG_PBLINK_TSIZE);
        write_varint(out, link.tsize);
    }

    let file_size: u64 = links.iter().map(|link| link.file_size).sum();
    let blocksizes_len: usize = links
        .iter()
        .map(|link| 1 + varint_len(link.file_size))
        .sum();
    let unixfs_len = 1 + varint_len(UNIXFS_TYPE_FILE) + 1 + varint_len(file_size) + blocksizes_len;

    out.push(TAG_PBNODE_DATA);
    write_varint(out, unixfs_len as u64);
    out.push(TAG_UNIXFS_TYPE);
    write_varint(out, UNIXFS_TYPE_FILE);
    out.push(TAG_UNIXFS_FILESIZE);
    write_varint(out, file_size);
    for link in links {
        out.push(TAG_UNIXFS_BLOCKSIZE);
        write_varint(out, link.file_size);
    }
}

/// Appends `value` as a protobuf base-128 varint.
fn write_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn varint_len(value: u64) -> usize {
    let significant_bits = 64 - value.leading_zeros() as usize;
    significant_bits.div_ceil(7).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KIB: usize = 1024;
    const MIB: usize = 1024 * KIB;
    const CHUNK: usize = 256 * KIB;

    /// Seed of the test content. Changing it invalidates every node-produced CID below.
    const SEED: u64 = 0x6b75_7261_2d63_6964;

    /// Returns `len` bytes of xorshift64 output (shifts 13, 7, 17), each state written as 8
    /// little-endian bytes. The sequence is fixed for a seed, so CIDs computed by an IPFS node
    /// from a file of these bytes stay valid as expected values.
    fn pseudo_random_bytes(len: usize, seed: u64) -> Vec<u8> {
        let mut state = seed;
        let mut bytes = Vec::with_capacity(len + 8);
        while bytes.len() < len {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            bytes.extend_from_slice(&state.to_le_bytes());
        }
        bytes.truncate(len);
        bytes
    }

    fn cid_of(data: &[u8], options: CidOptions) -> Cid {
        let mut builder = CidBuilder::new(options);
        builder.update(data);
        builder.finish()
    }

    #[test]
    fn known_vectors_match_kubo() {
        let cases: [(&[u8], &str); 2] = [
            // The empty file is one empty raw leaf.
            (
                b"",
                "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku",
            ),
            // "hello world" and a newline, as `echo` writes it.
            (
                b"hello world\n",
                "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4",
            ),
        ];
        for (data, expected) in cases {
            let cid = cid_of(data, CidOptions::default());
            assert_eq!(cid.to_string(), expected, "content {data:?}");
        }
    }

    /// The expected CIDs come from a real IPFS node: `ipfs add --cid-version=1 --raw-leaves
    /// --chunker=size-N` (N as in the row, sent as `/api/v0/add?cid-version=1&raw-leaves=true&
    /// chunker=size-N`) on a file holding `pseudo_random_bytes(len, SEED)`. The node was js-ipfs
    /// 0.66.1 as started by `tools/start-ipfs.sh`, whose balanced importer gives Kubo's CIDs.
    #[test]
    fn generated_files_match_ipfs_node() {
        let default = CidOptions::default();
        let cases: [(usize, CidOptions, &str); 11] = [
            // 0 B: the empty raw leaf.
            (
                0,
                default,
                "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku",
            ),
            // 1 B: one raw leaf.
            (
                1,
                default,
                "bafkreigkigcbyxey4nhuuoxihwjcbfadsuybvfqw62owm4vqj2rsf4uowa",
            ),
            // 256 KiB - 1: one short raw leaf.
            (
                CHUNK - 1,
                default,
                "bafkreideltqsjpv5s6tbcizm7dnfevjjmpbgopqrndhv4uxevlz2ojwn34",
            ),
            // 256 KiB: exactly one full chunk, still a single raw leaf and no dag-pb node.
            (
                CHUNK,
                default,
                "bafkreielyv6zgegpcjwtgquduvihdolvalk46b2dnmi5p4ljrmi3zfyubi",
            ),
            // 256 KiB + 1: a dag-pb root over a full leaf and a 1-byte leaf.
            (
                CHUNK + 1,
                default,
                "bafybeihdltdvs6lht7bo5gj3ga5igq3akoiofre354nqh2tpjkmuzcbjry",
            ),
            // 174 chunks: one full node of height 1 is the root.
            (
                174 * CHUNK,
                default,
                "bafybeiaffr2o5w2bjamyidkmuuor7hvyv5p4gf4cxw5yefynp6c7fq6tsi",
            ),
            // 174 chunks + 1 B: a height-2 root over the full node and a height-1 node that
            // has the 1-byte leaf as its only child.
            (
                174 * CHUNK + 1,
                default,
                "bafybeihhomlmc3k5sqk532ccdrvqtdetitkoebe6jhmya7unmsvgwvxx2a",
            ),
            // 10 MiB: 40 leaves under one node.
            (
                10 * MIB,
                default,
                "bafybeid34h35yaribqfm5axnelorcazff3vcnijennuqfdxgbqt5i25kty",
            ),
            // 60 MiB: a height-2 root over a full node and a node with 66 leaves.
            (
                60 * MIB,
                default,
                "bafybeictqalslfshjcn5tkkztavviqo4koeli7lu5ud5yi7pq3zmbww4a4",
            ),
            // 1 KiB chunks, 174 * 174 chunks + 1 B: a height-3 root over a full height-2
            // subtree and a chain of single-child nodes down to the 1-byte leaf.
            (
                174 * 174 * KIB + 1,
                CidOptions {
                    chunk_size: KIB,
                    max_links: 174,
                },
                "bafybeigfex7wltbhgd6pcmx5f3jfhuj6ztkardvh7nxst2wf2gt7ag7f3u",
            ),
            // 1 KiB chunks, (174 * 174 + 1000) chunks + 7 B: a height-3 root whose second
            // height-2 child contains 5 full height-1 nodes and a sixth one with 131 leaves.
            (
                (174 * 174 + 1000) * KIB + 7,
                CidOptions {
                    chunk_size: KIB,
                    max_links: 174,
                },
                "bafybeic5rngiu2jvcvcoexobnsl4fsryxcpl2wlz36h77ud2wdwifm4ize",
            ),
        ];

        let content = pseudo_random_bytes(cases.iter().map(|case| case.0).max().unwrap(), SEED);
        for (len, options, expected) in cases {
            let cid = cid_of(&content[..len], options);
            assert_eq!(cid.to_string(), expected, "{len} bytes with {options:?}");
        }
    }

    #[test]
    fn root_codec_depends_on_chunk_count() {
        let content = pseudo_random_bytes(CHUNK + 1, SEED);
        let cases = [
            // Up to one chunk: the raw leaf is the root.
            (0, RAW_CODEC),
            (CHUNK, RAW_CODEC),
            // Two chunks: a dag-pb node is the root.
            (CHUNK + 1, DAG_PB_CODEC),
        ];
        for (len, codec) in cases {
            let cid = cid_of(&content[..len], CidOptions::default());
            assert_eq!(cid.version(), cid::Version::V1, "{len} bytes");
            assert_eq!(cid.codec(), codec, "{len} bytes");
            assert_eq!(cid.hash().code(), SHA2_256_CODE, "{len} bytes");
        }
    }

    #[test]
    fn slice_sizes_do_not_change_cid() {
        let content = pseudo_random_bytes(3 * CHUNK + 12_345, SEED);
        let expected = cid_of(&content, CidOptions::default());

        // Fixed slice sizes that straddle chunk boundaries in different ways.
        for slice_size in [1, 7, 4095, CHUNK - 1, CHUNK, CHUNK + 1, 1_000_003] {
            let mut builder = CidBuilder::new(CidOptions::default());
            for slice in content.chunks(slice_size) {
                builder.update(slice);
            }
            assert_eq!(builder.bytes_seen(), content.len() as u64);
            assert_eq!(builder.finish(), expected, "slices of {slice_size} bytes");
        }

        // Random split points, with empty slices mixed in.
        let mut state = SEED;
        for round in 0..20 {
            let mut builder = CidBuilder::new(CidOptions::default());
            let mut rest = &content[..];
            while !rest.is_empty() {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let take = (state % (2 * CHUNK as u64)) as usize % (rest.len() + 1);
                builder.update(&rest[..take]);
                rest = &rest[take..];
            }
            assert_eq!(builder.finish(), expected, "random split, round {round}");
        }
    }

    /// Builds the DAG the way boxo's balanced layout does, recursively from the full list of
    /// chunks: grow the root one level each time it is full, then fill the new root with subtrees
    /// of full height. It shares the node encoding with the streaming builder and checks only the
    /// tree shape.
    fn reference_cid(data: &[u8], options: CidOptions) -> Cid {
        fn leaf(chunk: &[u8]) -> Link {
            Link {
                cid: raw_leaf_cid(Sha256::new_with_prefix(chunk)),
                tsize: chunk.len() as u64,
                file_size: chunk.len() as u64,
            }
        }

        fn node(children: &[Link]) -> Link {
            let mut bytes = Vec::new();
            encode_file_node(children, &mut bytes);
            Link {
                cid: Cid::new_v1(DAG_PB_CODEC, sha2_256_multihash(&Sha256::digest(&bytes))),
                tsize: bytes.len() as u64 + children.iter().map(|c| c.tsize).sum::<u64>(),
                file_size: children.iter().map(|c| c.file_size).sum(),
            }
        }

        /// Fills a node of `height` with the children already given, then with new subtrees
        /// built from `chunks[*next..]`, until it has `max_links` children or no chunk is left.
        fn fill(
            mut children: Vec<Link>,
            height: usize,
            chunks: &[&[u8]],
            next: &mut usize,
            max_links: usize,
        ) -> Link {
            while children.len() < max_links && *next < chunks.len() {
                let child = if height == 1 {
                    *next += 1;
                    leaf(chunks[*next - 1])
                } else {
                    fill(Vec::new(), height - 1, chunks, next, max_links)
                };
                children.push(child);
            }
            node(&children)
        }

        let chunks: Vec<&[u8]> = data.chunks(options.chunk_size).collect();
        let Some(first) = chunks.first() else {
            return leaf(&[]).cid;
        };
        let mut root = leaf(first);
        let mut next = 1;
        let mut height = 1;
        while next < chunks.len() {
            root = fill(vec![root], height, &chunks, &mut next, options.max_links);
            height += 1;
        }
        root.cid
    }

    #[test]
    fn streaming_matches_recursive_layout() {
        // Tiny chunks and fan-out give tall trees from a few hundred bytes, so trying every
        // length from 0 up covers each way a level can fill, overflow and grow.
        let cases = [
            // Binary tree of 1-byte leaves: height 9 at 260 bytes.
            (1, 2, 260),
            // Binary tree with a short last chunk at most lengths.
            (3, 2, 260),
            // Fan-out 3: height 4 at 260 bytes.
            (4, 3, 260),
            // Fan-out 5 with 2-byte chunks: height 4 at 260 bytes.
            (2, 5, 260),
            // Kubo's fan-out: the root grows to height 2 after 174 leaves.
            (1, 174, 400),
        ];
        let content = pseudo_random_bytes(400, SEED);
        for (chunk_size, max_links, max_len) in cases {
            let options = CidOptions {
                chunk_size,
                max_links,
            };
            for len in 0..=max_len {
                let data = &content[..len];
                assert_eq!(
                    cid_of(data, options),
                    reference_cid(data, options),
                    "{len} bytes with {options:?}"
                );
            }
        }
    }

    #[test]
    fn varint_encoding_matches_length() {
        let cases = [
            (0, vec![0x00]),
            (1, vec![0x01]),
            (127, vec![0x7f]),
            (128, vec![0x80, 0x01]),
            (300, vec![0xac, 0x02]),
            (262_144, vec![0x80, 0x80, 0x10]),
            (
                u64::MAX,
                vec![0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
            ),
        ];
        for (value, expected) in cases {
            let mut out = Vec::new();
            write_varint(&mut out, value);
            assert_eq!(out, expected, "encoding of {value}");
            assert_eq!(varint_len(value), expected.len(), "length of {value}");
        }
    }

    #[test]
    #[should_panic(expected = "max_links must be at least 2")]
    fn new_rejects_single_link_nodes() {
        CidBuilder::new(CidOptions {
            chunk_size: CHUNK,
            max_links: 1,
        });
    }
}
