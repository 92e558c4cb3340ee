# The cluster autoscaler runs on the core nodes and finds the node groups by
# the tags EKS puts on their auto scaling groups (autoDiscovery), so each
# zone's core group is found without being named here.

resource "helm_release" "cluster_autoscaler" {
  name       = "cluster-autoscaler"
  namespace  = "kube-system"
  repository = "https://kubernetes.github.io/autoscaler"
  chart      = "cluster-autoscaler"
  version    = var.cluster_autoscaler_chart_version

  values = [yamlencode({
    cloudProvider = "aws"
    awsRegion     = var.region
    autoDiscovery = { clusterName = var.cluster_name }
    image         = { tag = var.cluster_autoscaler_image_tag }
    rbac = {
      serviceAccount = {
        create      = true
        name        = "cluster-autoscaler"
        annotations = { "eks.amazonaws.com/role-arn" = aws_iam_role.cluster_autoscaler.arn }
      }
    }
    nodeSelector = { "hub.jupyter.org/node-purpose" = "core" }
    tolerations = [
      { key = "CriticalAddonsOnly", operator = "Exists" },
    ]
    extraArgs = {
      # Keeps the per-zone core groups (eks.tf) even as they grow; the AWS
      # provider ignores the eks.amazonaws.com/nodegroup label that tells them apart.
      "balance-similar-node-groups"   = true
      "skip-nodes-with-local-storage" = false
      expander                        = "least-waste"
    }
  })]

  depends_on = [
    aws_eks_node_group.core,
    aws_eks_access_policy_association.admins,
  ]
}
