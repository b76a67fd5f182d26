//! What an IP address is to the egress policy: globally reachable unicast,
//! a block of the IANA IPv4 and IPv6 special-purpose address registries, or
//! a cloud metadata endpoint; and which IPv4 addresses an IPv6 address
//! carries (IPv4-mapped, IPv4-compatible, NAT64, 6to4, Teredo), since a
//! packet to one of those may end up at the IPv4 address inside it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{Ipv4Net, Ipv6Net};

/// How the policy treats a block of addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Globally reachable unicast: allowed.
    Global,
    /// Addresses of hosts on private networks (loopback, private-use,
    /// shared, link-local, unique-local): `--allow-private-networks` or a
    /// covering `--allow-network` opens them.
    Private,
    /// Special-purpose and not globally reachable (documentation,
    /// benchmarking, reserved, protocol assignments): only a covering
    /// `--allow-network` opens them.
    Special,
    /// Never a destination, whatever the flags.
    Unroutable,
    /// A cloud metadata or credential endpoint: refused whatever the flags.
    Metadata,
}

/// The block an address falls in, named for the sentence that refuses it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Block {
    pub kind: Kind,
    /// Completes "… is": e.g. "a private-use address (10.0.0.0/8)".
    pub name: &'static str,
}

const fn v4(a: u8, b: u8, c: u8, d: u8, len: u8) -> Ipv4Net {
    Ipv4Net::new_assert(Ipv4Addr::new(a, b, c, d), len)
}

#[allow(clippy::too_many_arguments)]
const fn v6(a: u16, b: u16, c: u16, d: u16, e: u16, f: u16, g: u16, h: u16, len: u8) -> Ipv6Net {
    Ipv6Net::new_assert(Ipv6Addr::new(a, b, c, d, e, f, g, h), len)
}

use Kind::*;

/// First match wins, so the narrower entries come before the blocks that
/// hold them. Metadata endpoints are listed first: several sit inside
/// blocks a flag may open (link-local, shared address space).
const V4: &[(Ipv4Net, Kind, &str)] = &[
    (
        v4(169, 254, 169, 254, 32),
        Metadata,
        "the cloud instance metadata service (AWS, Azure, Google Cloud, Oracle, OpenStack and others)",
    ),
    (v4(169, 254, 170, 2, 32), Metadata, "the AWS ECS task metadata and credentials endpoint"),
    (v4(169, 254, 170, 23, 32), Metadata, "the AWS EKS Pod Identity credentials endpoint"),
    (v4(169, 254, 0, 23, 32), Metadata, "the Tencent Cloud metadata service"),
    (v4(169, 254, 42, 42, 32), Metadata, "the Scaleway metadata service"),
    (v4(100, 100, 100, 200, 32), Metadata, "the Alibaba Cloud metadata service"),
    (v4(192, 0, 0, 192, 32), Metadata, "the Oracle Cloud metadata service"),
    (v4(168, 63, 129, 16, 32), Metadata, "the Azure platform endpoint (WireServer)"),
    (v4(0, 0, 0, 0, 8), Unroutable, "in \"this network\" (0.0.0.0/8), which reaches this very host"),
    (v4(10, 0, 0, 0, 8), Private, "a private-use address (10.0.0.0/8)"),
    (v4(100, 64, 0, 0, 10), Private, "a shared (carrier-grade NAT) address (100.64.0.0/10)"),
    (v4(127, 0, 0, 0, 8), Private, "a loopback address (127.0.0.0/8)"),
    (v4(169, 254, 0, 0, 16), Private, "a link-local address (169.254.0.0/16)"),
    (v4(172, 16, 0, 0, 12), Private, "a private-use address (172.16.0.0/12)"),
    (v4(192, 0, 0, 9, 32), Global, "the PCP anycast address"),
    (v4(192, 0, 0, 10, 32), Global, "the TURN anycast address"),
    (v4(192, 0, 0, 0, 24), Special, "an IETF protocol assignment (192.0.0.0/24)"),
    (v4(192, 0, 2, 0, 24), Special, "a documentation address (192.0.2.0/24)"),
    (v4(192, 88, 99, 0, 24), Special, "the deprecated 6to4 relay anycast block (192.88.99.0/24)"),
    (v4(192, 168, 0, 0, 16), Private, "a private-use address (192.168.0.0/16)"),
    (v4(198, 18, 0, 0, 15), Special, "a benchmarking address (198.18.0.0/15)"),
    (v4(198, 51, 100, 0, 24), Special, "a documentation address (198.51.100.0/24)"),
    (v4(203, 0, 113, 0, 24), Special, "a documentation address (203.0.113.0/24)"),
    (v4(224, 0, 0, 0, 4), Unroutable, "a multicast address (224.0.0.0/4)"),
    (v4(255, 255, 255, 255, 32), Unroutable, "the broadcast address"),
    (v4(240, 0, 0, 0, 4), Special, "a reserved address (240.0.0.0/4)"),
];

const V6: &[(Ipv6Net, Kind, &str)] = &[
    (
        v6(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0, 32),
        Metadata,
        "in the AWS service block (instance metadata, EKS Pod Identity)",
    ),
    (v6(0xfd20, 0xce, 0, 0, 0, 0, 0, 0x254, 128), Metadata, "the Google Cloud metadata service"),
    (v6(0xfd00, 0xc1, 0, 0, 0, 0, 0xa9fe, 0xa9fe, 128), Metadata, "the Oracle Cloud metadata service"),
    (v6(0xfd00, 0x42, 0, 0, 0, 0, 0, 0x42, 128), Metadata, "the Scaleway metadata service"),
    (v6(0xfd00, 0xa9fe, 0xa9fe, 0, 0, 0, 0, 1, 128), Metadata, "the Akamai (Linode) metadata service"),
    (v6(0xfe80, 0, 0, 0, 0, 0, 0xa9fe, 0xa9fe, 128), Metadata, "the OpenStack metadata service"),
    (v6(0, 0, 0, 0, 0, 0, 0, 0, 128), Unroutable, "the unspecified address"),
    (v6(0, 0, 0, 0, 0, 0, 0, 1, 128), Private, "the loopback address"),
    (v6(0, 0, 0, 0, 0, 0, 0, 0, 96), Special, "a deprecated IPv4-compatible address (::/96)"),
    (v6(0x64, 0xff9b, 0, 0, 0, 0, 0, 0, 96), Global, "a NAT64 address (64:ff9b::/96)"),
    (v6(0x64, 0xff9b, 1, 0, 0, 0, 0, 0, 48), Private, "a local-use NAT64 address (64:ff9b:1::/48)"),
    (v6(0x100, 0, 0, 0, 0, 0, 0, 0, 64), Special, "a discard-only address (100::/64)"),
    (v6(0x100, 0, 0, 1, 0, 0, 0, 0, 64), Special, "a dummy address (100:0:0:1::/64)"),
    (v6(0x2001, 0x1, 0, 0, 0, 0, 0, 1, 128), Global, "the PCP anycast address"),
    (v6(0x2001, 0x1, 0, 0, 0, 0, 0, 2, 128), Global, "the TURN anycast address"),
    (v6(0x2001, 0x1, 0, 0, 0, 0, 0, 3, 128), Global, "the DNS-SD service registration anycast address"),
    (v6(0x2001, 0x3, 0, 0, 0, 0, 0, 0, 32), Global, "an AMT address"),
    (v6(0x2001, 0x4, 0x112, 0, 0, 0, 0, 0, 48), Global, "an AS112 address"),
    (v6(0x2001, 0x20, 0, 0, 0, 0, 0, 0, 28), Global, "an ORCHIDv2 address"),
    (v6(0x2001, 0x30, 0, 0, 0, 0, 0, 0, 28), Global, "a DRIP address"),
    (v6(0x2001, 0, 0, 0, 0, 0, 0, 0, 32), Special, "a Teredo address (2001::/32)"),
    (v6(0x2001, 0x2, 0, 0, 0, 0, 0, 0, 48), Special, "a benchmarking address (2001:2::/48)"),
    (v6(0x2001, 0, 0, 0, 0, 0, 0, 0, 23), Special, "an IETF protocol assignment (2001::/23)"),
    (v6(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0, 32), Special, "a documentation address (2001:db8::/32)"),
    (v6(0x2002, 0, 0, 0, 0, 0, 0, 0, 16), Global, "a 6to4 address (2002::/16)"),
    (v6(0x3fff, 0, 0, 0, 0, 0, 0, 0, 20), Special, "a documentation address (3fff::/20)"),
    (v6(0x5f00, 0, 0, 0, 0, 0, 0, 0, 16), Special, "a segment-routing (SRv6) identifier (5f00::/16)"),
    (v6(0xfc00, 0, 0, 0, 0, 0, 0, 0, 7), Private, "a unique-local address (fc00::/7)"),
    (v6(0xfe80, 0, 0, 0, 0, 0, 0, 0, 10), Private, "a link-local address (fe80::/10)"),
    (v6(0xfec0, 0, 0, 0, 0, 0, 0, 0, 10), Private, "a deprecated site-local address (fec0::/10)"),
    (v6(0xff00, 0, 0, 0, 0, 0, 0, 0, 8), Unroutable, "a multicast address (ff00::/8)"),
    // Only 2000::/3 is allocated as global unicast; the rest is reserved.
    (v6(0x2000, 0, 0, 0, 0, 0, 0, 0, 3), Global, "a global unicast address"),
    (v6(0, 0, 0, 0, 0, 0, 0, 0, 0), Special, "outside the global unicast space (2000::/3)"),
];

/// The block `ip` falls in. IPv4-mapped IPv6 addresses are IPv4 on the
/// wire and are classified as such.
pub fn block_of(ip: IpAddr) -> Block {
    match canonical(ip) {
        IpAddr::V4(a) => V4
            .iter()
            .find(|(net, ..)| net.contains(&a))
            .map_or(Block { kind: Global, name: "a global unicast address" }, |&(_, kind, name)| Block { kind, name }),
        IpAddr::V6(a) => V6
            .iter()
            .find(|(net, ..)| net.contains(&a))
            .map(|&(_, kind, name)| Block { kind, name })
            .expect("::/0 matches every address"),
    }
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is; any other
/// address as is.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(a) => a.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The IPv4 addresses `a` carries and how, for the transition mechanisms
/// that route to them: IPv4-compatible (::/96), NAT64 (64:ff9b::/96, and
/// the local-use 64:ff9b:1::/48 at both its /48 and /96 positions), 6to4
/// (2002::/16) and Teredo (2001::/32: server and obfuscated client).
pub fn carried_ipv4(a: Ipv6Addr) -> Vec<(Ipv4Addr, &'static str)> {
    let s = a.segments();
    let bits = u128::from(a);
    let at = |shift: u32| Ipv4Addr::from((bits >> shift) as u32);
    let last = at(0);
    let in_block = |net: Ipv6Net| net.contains(&a);
    let mut out = Vec::new();
    if s[..6] == [0; 6] && !matches!(u32::from(last), 0 | 1) {
        out.push((last, "IPv4-compatible"));
    }
    if in_block(v6(0x64, 0xff9b, 0, 0, 0, 0, 0, 0, 96)) {
        out.push((last, "NAT64"));
    }
    if in_block(v6(0x64, 0xff9b, 1, 0, 0, 0, 0, 0, 48)) {
        // Deployments put a /96 inside the block; the /48 layout of RFC
        // 6052 would read other bits, and refuse what a /96 carries well.
        out.push((last, "local-use NAT64"));
    }
    if in_block(v6(0x2002, 0, 0, 0, 0, 0, 0, 0, 16)) {
        out.push((at(80), "6to4"));
    }
    if in_block(v6(0x2001, 0, 0, 0, 0, 0, 0, 0, 32)) {
        out.push((at(64), "Teredo server"));
        out.push((Ipv4Addr::from(!(bits as u32)), "Teredo client"));
    }
    out
}
